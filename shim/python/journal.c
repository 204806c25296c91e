/*
 * journal.c - what torchrw changed on Python objects for an export: each
 * change an owner (a class, a module, a dict), a key and the value before
 * (NULL when there was none), and how it was made (an attribute or an
 * item).  Undone newest first when the export's patches go (at its end,
 * on a raise, in a fork child: apply.c), so what was changed twice comes
 * back to what it was first.
 */
#include "glue.h"

typedef struct {
  trw__py_undo how;
  PyObject *owner, *key, *old;
} Entry;

static Entry *entries;
static size_t nentries, capentries;

int trw__py_journal_add(trw__py_undo how, PyObject *owner, PyObject *key, PyObject *old)
{
  if (nentries == capentries) {
    size_t cap = capentries ? capentries * 2 : 32;
    Entry *grown = PyMem_Realloc(entries, cap * sizeof *grown);
    if (!grown) {
      PyErr_NoMemory();
      return -1;
    }
    entries = grown;
    capentries = cap;
  }
  entries[nentries++] = (Entry){how, Py_NewRef(owner), Py_NewRef(key), Py_XNewRef(old)};
  return 0;
}

static void release(Entry *e)
{
  Py_DECREF(e->owner);
  Py_DECREF(e->key);
  Py_XDECREF(e->old);
}

void trw__py_journal_drop_last(void)
{
  if (nentries > 0)
    release(&entries[--nentries]);
}

void trw__py_journal_unwind(void)
{
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  while (nentries > 0) {
    Entry *e = &entries[--nentries];
    int rc;
    /* Items through the mapping protocol: torch 1.13's nn.Module._modules
     * is an OrderedDict, whose order PyDict_SetItem would leave behind. */
    if (e->how == TRW__PY_UNDO_ITEM)
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
      if (e->old)
        trw__log(TRW__LOG_ERROR, "cannot restore %s: %s", key ? key : "an item", why);
    }
    release(e);
  }
  PyErr_Restore(type, value, tb);
}
