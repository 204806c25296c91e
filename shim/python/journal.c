/*
 * journal.c - what torchrw changed on Python objects: each change an owner
 * (a class, a module, a dict, torch's symbolic registry), a key and the
 * value before (NULL when there was none), and how to undo it (set or
 * delete an attribute or an item, or call owner.key(*old)).  One journal
 * per lifetime (trw__py_until): the trace's patches, the symbolics; each
 * undone newest first when its lifetime ends (at the export's end, on a
 * raise, in a fork child: apply.c), so what was changed twice comes back
 * to what it was first.
 */
#include "glue.h"

typedef struct {
  trw__py_undo how;
  PyObject *owner, *key, *old;
} Entry;

static struct {
  Entry *entries;
  size_t n, cap;
} journals[TRW__PY_UNTIL_PROCESS + 1];

int trw__py_journal_add(trw__py_until until, trw__py_undo how, PyObject *owner, PyObject *key,
                        PyObject *old)
{
  if (until < 0 || until > TRW__PY_UNTIL_PROCESS) {
    PyErr_SetString(PyExc_SystemError, "torchrw: no such journal");
    return -1;
  }
  if (journals[until].n == journals[until].cap) {
    size_t cap = journals[until].cap ? journals[until].cap * 2 : 32;
    Entry *grown = PyMem_Realloc(journals[until].entries, cap * sizeof *grown);
    if (!grown) {
      PyErr_NoMemory();
      return -1;
    }
    journals[until].entries = grown;
    journals[until].cap = cap;
  }
  journals[until].entries[journals[until].n++] =
      (Entry){how, Py_NewRef(owner), Py_NewRef(key), Py_XNewRef(old)};
  return 0;
}

static void release(Entry *e)
{
  Py_DECREF(e->owner);
  Py_DECREF(e->key);
  Py_XDECREF(e->old);
}

void trw__py_journal_drop_last(trw__py_until until)
{
  if (until >= 0 && until <= TRW__PY_UNTIL_PROCESS && journals[until].n > 0)
    release(&journals[until].entries[--journals[until].n]);
}

void trw__py_journal_unwind(trw__py_until until)
{
  if (until < 0 || until > TRW__PY_UNTIL_PROCESS)
    return;
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  while (journals[until].n > 0) {
    Entry *e = &journals[until].entries[--journals[until].n];
    int rc;
    /* Items through the mapping protocol: torch 1.13's nn.Module._modules
     * is an OrderedDict, whose order PyDict_SetItem would leave behind. */
    if (e->how == TRW__PY_UNDO_CALL) {
      PyObject *m = PyObject_GetAttr(e->owner, e->key);
      PyObject *r = m ? PyObject_Call(m, e->old, NULL) : NULL;
      rc = r ? 0 : -1;
      Py_XDECREF(r);
      Py_XDECREF(m);
    } else if (e->how == TRW__PY_UNDO_ITEM)
      rc = e->old ? PyObject_SetItem(e->owner, e->key, e->old)
                  : PyObject_DelItem(e->owner, e->key);
    else
      rc = e->old ? PyObject_SetAttr(e->owner, e->key, e->old)
                  : PyObject_DelAttr(e->owner, e->key);
    if (rc != 0) {
      char why[512];
      const char *key = PyUnicode_Check(e->key) ? PyUnicode_AsUTF8(e->key) : NULL;
      trw__py_describe_error(why, sizeof why, 0);
      /* A key taken away since (by the model itself) needs nothing back. */
      if (e->old || e->how == TRW__PY_UNDO_CALL)
        trw__log(TRW__LOG_ERROR, "cannot restore %s: %s", key ? key : "an item", why);
    }
    release(e);
  }
  PyErr_Restore(type, value, tb);
}
