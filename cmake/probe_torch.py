"""Prints what CMake needs to build a torchrw runtime for this interpreter's
torch, one key=value per line (lists joined by ';').  Never fails: a
problem is printed as error=... for CMake to report."""
import sys
import sysconfig


def main():
    print("python=" + sys.executable)
    print("python_version=%d.%d" % sys.version_info[:2])
    print("python_include=" + sysconfig.get_paths()["include"])
    try:
        import torch
    except Exception as e:  # an interpreter without torch, or a broken one
        print("error=cannot import torch: %s: %s" % (type(e).__name__, e))
        return
    import os
    root = os.path.dirname(torch.__file__)
    try:
        from torch.utils import cpp_extension
        includes = cpp_extension.include_paths()
        libdirs = cpp_extension.library_paths()
    except Exception:  # cpp_extension needs setuptools; the layout is known
        includes = [os.path.join(root, "include"),
                    os.path.join(root, "include", "torch", "csrc", "api", "include")]
        libdirs = [os.path.join(root, "lib")]
    print("torch_version=" + torch.__version__)
    print("torch_root=" + root)
    print("torch_includes=" + ";".join(includes))
    print("torch_libdirs=" + ";".join(libdirs))
    print("torch_cxx11_abi=%d" % int(torch.compiled_with_cxx11_abi()))


main()
