/* The native half of pipeline/wirescan.py: the same three functions, the same results.
 * See that module for the interface. Every read is bounds-checked; malformed input raises
 * WireError (pipeline.wirescan.WireError, a ValueError). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 100

static PyObject *WireError; /* pipeline.wirescan.WireError, looked up at import */

typedef const uint8_t *ptr;

static int fail(const char *msg) {
    PyErr_SetString(WireError, msg);
    return -1;
}

static inline int rd_varint(ptr *pp, ptr end, uint64_t *out) {
    ptr p = *pp;
    uint64_t v = 0;
    int shift = 0;
    while (p < end) {
        uint8_t b = *p++;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (b < 0x80) {
            *pp = p;
            *out = v;
            return 0;
        }
        shift += 7;
        if (shift > 63) return fail("varint too long");
    }
    return fail("truncated varint");
}

/* One field: its key, and the value's bounds (a LEN value without its length prefix;
 * other values as they are on the wire). *pp moves past the field. */
typedef struct {
    uint64_t key;
    ptr start; /* of the field (its tag) */
    ptr v0, v1;
} field;

static int skip_value(ptr *pp, ptr end, uint64_t key, int depth);

static int next_field_slow(ptr *pp, ptr end, field *f);

/* The common cases inline, for a one-byte tag: a LEN field whose length takes one or two
 * bytes (attributes, ids, names, most messages), a fixed64 (times) and a short varint
 * (kinds, codes). Anything else takes the general path. */
static inline __attribute__((always_inline)) int next_field(ptr *pp, ptr end, field *f) {
    ptr p = *pp;
    if (end - p >= 3 && p[0] < 0x80 && p[0] >= 0x08) {
        ptr v = p + 1, w;
        switch (p[0] & 7) {
        case 2: {
            uint64_t n = p[1];
            v = p + 2;
            if (n >= 0x80) {
                if (p[2] >= 0x80) return next_field_slow(pp, end, f);
                n = (n & 0x7F) | ((uint64_t)p[2] << 7);
                v++;
            }
            if (n > (uint64_t)(end - v)) return fail("field runs past the end of its message");
            w = v + n;
            break;
        }
        case 1:
            if (end - v < 8) return next_field_slow(pp, end, f);
            w = v + 8;
            break;
        case 0:
            w = v;
            while (w < end && *w >= 0x80 && w - v < 8) w++;
            if (w >= end || *w >= 0x80) return next_field_slow(pp, end, f);
            w++;
            break;
        default:
            return next_field_slow(pp, end, f);
        }
        f->start = p;
        f->key = p[0];
        f->v0 = v;
        f->v1 = *pp = w;
        return 0;
    }
    return next_field_slow(pp, end, f);
}

static int next_field_slow(ptr *pp, ptr end, field *f) {
    f->start = *pp;
    if (rd_varint(pp, end, &f->key)) return -1;
    if ((f->key >> 3) == 0) return fail("field number 0");
    if ((f->key & 7) == 2) {
        uint64_t n;
        if (rd_varint(pp, end, &n)) return -1;
        if (n > (uint64_t)(end - *pp)) return fail("field runs past the end of its message");
        f->v0 = *pp;
        *pp += n;
        f->v1 = *pp;
        return 0;
    }
    f->v0 = *pp;
    if (skip_value(pp, end, f->key, 0)) return -1;
    f->v1 = *pp;
    return 0;
}

static int skip_value(ptr *pp, ptr end, uint64_t key, int depth) {
    uint64_t n;
    switch (key & 7) {
    case 0:
        return rd_varint(pp, end, &n);
    case 1:
        if (end - *pp < 8) return fail("field runs past the end of its message");
        *pp += 8;
        return 0;
    case 5:
        if (end - *pp < 4) return fail("field runs past the end of its message");
        *pp += 4;
        return 0;
    case 2:
        if (rd_varint(pp, end, &n)) return -1;
        if (n > (uint64_t)(end - *pp)) return fail("field runs past the end of its message");
        *pp += n;
        return 0;
    case 3:
        if (depth >= MAX_DEPTH) return fail("groups nested too deeply");
        for (;;) {
            uint64_t k;
            if (rd_varint(pp, end, &k)) return -1;
            if ((k & 7) == 4) {
                if ((k >> 3) != (key >> 3)) return fail("mismatched end-group tag");
                return 0;
            }
            if (skip_value(pp, end, k, depth + 1)) return -1;
        }
    default:
        return fail("invalid wire type");
    }
}

static inline uint64_t le64(ptr p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v; /* little-endian hosts only (x86-64, aarch64) */
}

/* A key's hash: its length and first and last eight bytes (keys are short, and a match
 * is confirmed with memcmp), so the cost does not grow with the key. */
static inline uint64_t keyhash(const uint8_t *p, Py_ssize_t len) {
    uint64_t a = 0, b = 0;
    if (len >= 8) {
        a = le64(p);
        b = le64(p + len - 8);
    } else {
        memcpy(&a, p, (size_t)len);
    }
    uint64_t h = (a * 0x9E3779B97F4A7C15ULL) ^ ((b + (uint64_t)len) * 0xC2B2AE3D27D4EB4FULL);
    return h ^ (h >> 29);
}

static PyObject *mkstr(ptr a, ptr b) {
    PyObject *s = PyUnicode_DecodeUTF8((const char *)a, b - a, NULL);
    if (s == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
        PyErr_SetString(WireError, "invalid UTF-8 in a string field");
    }
    return s;
}

/* An occurrence of a string field that a later one overrides: still validated, as the
 * decoder does (and the Python functions). */
static int check_str(ptr a, ptr b) {
    PyObject *s = mkstr(a, b);
    if (s == NULL) return -1;
    Py_DECREF(s);
    return 0;
}

/* The last string field with wire key `tag` of a message (0x0A, field 1: a KeyValue's
 * key, an InstrumentationScope's name; 0x12, field 2: an Event's name): its bounds (NULL:
 * none). Earlier copies are checked for UTF-8 as a decoder would. */
static int last_str(ptr v0, ptr v1, unsigned int tag, ptr *k0, ptr *k1) {
    ptr q = v0;
    field g;
    *k0 = *k1 = NULL;
    while (q < v1) {
        if (next_field(&q, v1, &g)) return -1;
        if (g.key == tag) {
            if (*k0 && check_str(*k0, *k1)) return -1;
            *k0 = g.v0;
            *k1 = g.v1;
        }
    }
    return 0;
}

static inline int last_str1(ptr v0, ptr v1, ptr *k0, ptr *k1) {
    return last_str(v0, v1, 0x0A, k0, k1);
}

/* A KeyValue in the usual shape, `0A <key> [12 <value>]` and nothing more: the bounds of
 * its key and value (*x0 NULL: no value). 0 for any other shape (repeated or reordered
 * fields, unknown fields, a malformed one), which the general path then reads. */
static inline int kv_simple(ptr p, ptr end, ptr *k0, ptr *k1, ptr *x0, ptr *x1) {
    if (end - p < 2 || p[0] != 0x0A || p[1] >= 0x80) return 0;
    Py_ssize_t n = p[1];
    p += 2;
    if (n > end - p) return 0;
    *k0 = p;
    *k1 = p + n;
    p += n;
    if (p == end) {
        *x0 = *x1 = NULL;
        return 1;
    }
    if (*p++ != 0x12) return 0;
    uint64_t m = 0;
    for (int shift = 0;; shift += 7) {
        if (p >= end || shift > 28) return 0;
        uint8_t b = *p++;
        m |= (uint64_t)(b & 0x7F) << shift;
        if (b < 0x80) break;
    }
    if (m != (uint64_t)(end - p)) return 0;
    *x0 = p;
    *x1 = end;
    return 1;
}

/* -- spans ------------------------------------------------------------------------- */

#define NAME_CACHE 256 /* span names: a batch has few distinct ones */
typedef struct {
    PyObject *s; /* an ASCII str, or NULL */
    uint64_t h;
} name_slot;

typedef struct {
    PyObject *out;
    PyObject *last_tid; /* the previous span's trace id, shared when equal */
    ptr base;
    name_slot names[NAME_CACHE]; /* direct-mapped: equal names share one str */
} scan_state;

/* The str of UTF-8 bytes [a, b), shared through a direct-mapped cache `tab` of `size`
 * (a power of two) entries when it is ASCII and at most `max` bytes long: a repeated value
 * is not decoded again, and its hash is computed once for every dict it meets. */
static PyObject *cached_str(name_slot *tab, Py_ssize_t size, Py_ssize_t max, ptr a, ptr b) {
    Py_ssize_t n = b - a;
    if (n > max) return mkstr(a, b);
    uint64_t h = keyhash(a, n);
    name_slot *e = &tab[h & (uint64_t)(size - 1)];
    if (e->s != NULL && e->h == h && PyUnicode_GET_LENGTH(e->s) == n &&
        memcmp(PyUnicode_1BYTE_DATA(e->s), a, (size_t)n) == 0) {
        Py_INCREF(e->s);
        return e->s;
    }
    PyObject *v = mkstr(a, b);
    if (v != NULL && PyUnicode_IS_ASCII(v)) {
        Py_INCREF(v);
        Py_XSETREF(e->s, v);
        e->h = h;
    }
    return v;
}

static void scan_state_clear(scan_state *st) {
    Py_CLEAR(st->last_tid);
    for (int i = 0; i < NAME_CACHE; i++) Py_CLEAR(st->names[i].s);
}

static int scan_span(scan_state *st, PyObject *scope, ptr start, ptr end) {
    ptr p = start;
    ptr tid0 = NULL, tid1 = NULL, sid0 = NULL, sid1 = NULL, pid0 = NULL, pid1 = NULL;
    ptr nm0 = NULL, nm1 = NULL;
    int64_t kind = 0, code = 0;
    uint64_t t0 = 0, t1 = 0, v;
    field f;
    while (p < end) {
        if (next_field(&p, end, &f)) return -1;
        switch (f.key) {
        case 0x0A: tid0 = f.v0; tid1 = f.v1; break;
        case 0x12: sid0 = f.v0; sid1 = f.v1; break;
        case 0x22: pid0 = f.v0; pid1 = f.v1; break;
        case 0x2A:
            if (nm0 && check_str(nm0, nm1)) return -1;
            nm0 = f.v0;
            nm1 = f.v1;
            break;
        case 0x1A: { /* trace_state: validated like the decoder does */
            PyObject *s = mkstr(f.v0, f.v1);
            if (s == NULL) return -1;
            Py_DECREF(s);
            break;
        }
        case 0x30: {
            ptr q = f.v0;
            if (rd_varint(&q, f.v1, &v)) return -1;
            kind = (int32_t)(uint32_t)v;
            break;
        }
        case 0x39: t0 = le64(f.v0); break;
        case 0x41: t1 = le64(f.v0); break;
        case 0x7A: { /* status */
            ptr q = f.v0;
            field g;
            while (q < f.v1) {
                if (next_field(&q, f.v1, &g)) return -1;
                if (g.key == 0x18) {
                    ptr r = g.v0;
                    if (rd_varint(&r, g.v1, &v)) return -1;
                    code = (int32_t)(uint32_t)v;
                } else if (g.key == 0x12) {
                    PyObject *s = mkstr(g.v0, g.v1);
                    if (s == NULL) return -1;
                    Py_DECREF(s);
                }
            }
            break;
        }
        default: break;
        }
    }
    Py_ssize_t tl = tid0 ? tid1 - tid0 : 0, sl = sid0 ? sid1 - sid0 : 0;
    Py_ssize_t pl = pid0 ? pid1 - pid0 : 0;
    PyObject *tid, *key, *pkey, *name, *item;
    if (st->last_tid && PyBytes_GET_SIZE(st->last_tid) == tl &&
        memcmp(PyBytes_AS_STRING(st->last_tid), tid0 ? (const char *)tid0 : "", tl) == 0) {
        tid = st->last_tid;
        Py_INCREF(tid);
    } else {
        tid = PyBytes_FromStringAndSize(tid0 ? (const char *)tid0 : "", tl);
        if (tid == NULL) return -1;
        Py_XDECREF(st->last_tid);
        st->last_tid = tid;
        Py_INCREF(tid);
    }
    key = PyBytes_FromStringAndSize(NULL, tl + sl);
    if (key == NULL) goto fail_tid;
    memcpy(PyBytes_AS_STRING(key), PyBytes_AS_STRING(tid), tl);
    if (sl) memcpy(PyBytes_AS_STRING(key) + tl, sid0, sl);
    if (pl) {
        pkey = PyBytes_FromStringAndSize(NULL, tl + pl);
        if (pkey == NULL) goto fail_key;
        memcpy(PyBytes_AS_STRING(pkey), PyBytes_AS_STRING(tid), tl);
        memcpy(PyBytes_AS_STRING(pkey) + tl, pid0, pl);
    } else {
        pkey = PyBytes_FromStringAndSize("", 0);
        if (pkey == NULL) goto fail_key;
    }
    name = nm0 ? cached_str(st->names, NAME_CACHE, 128, nm0, nm1) : PyUnicode_FromStringAndSize("", 0);
    if (name == NULL) goto fail_pkey;
    item = PyTuple_New(11);
    if (item == NULL) {
        Py_DECREF(name);
        goto fail_pkey;
    }
    Py_INCREF(scope);
    PyTuple_SET_ITEM(item, 0, scope); /* the tuple owns what is set in it from here on */
    PyTuple_SET_ITEM(item, 1, name);
    PyTuple_SET_ITEM(item, 3, tid);
    PyTuple_SET_ITEM(item, 4, key);
    PyTuple_SET_ITEM(item, 5, pkey);
    PyObject *ints[6] = {
        PyLong_FromLongLong((long long)kind),
        PyLong_FromUnsignedLongLong((unsigned long long)t0),
        PyLong_FromUnsignedLongLong((unsigned long long)t1),
        PyLong_FromLongLong((long long)code),
        PyLong_FromSsize_t((Py_ssize_t)(start - st->base)),
        PyLong_FromSsize_t((Py_ssize_t)(end - st->base)),
    };
    static const int at[6] = {2, 6, 7, 8, 9, 10};
    int bad = 0;
    for (int i = 0; i < 6; i++) {
        if (ints[i] == NULL) {
            bad = 1;
            Py_INCREF(Py_None); /* a complete tuple, for its deallocation */
            ints[i] = Py_None;
        }
        PyTuple_SET_ITEM(item, at[i], ints[i]);
    }
    if (bad) {
        Py_DECREF(item);
        return -1;
    }
    /* only str, int and bytes inside: no cycle can pass through it, and the cyclic GC
       need not walk a batch's worth of these (CPython untracks such tuples lazily) */
    PyObject_GC_UnTrack(item);
    if (PyList_Append(st->out, item)) {
        Py_DECREF(item);
        return -1;
    }
    Py_DECREF(item);
    return 0;
fail_pkey:
    Py_DECREF(pkey);
fail_key:
    Py_DECREF(key);
fail_tid:
    Py_DECREF(tid);
    return -1;
}

static int scan_scope(scan_state *st, ptr start, ptr end) {
    ptr p = start;
    field f;
    ptr nm0 = NULL, nm1 = NULL;
    /* the scope's name first: fields may come in any order */
    while (p < end) {
        if (next_field(&p, end, &f)) return -1;
        if (f.key == 0x0A) { /* scope; repeated occurrences merge: the last name wins */
            ptr a, b;
            if (last_str1(f.v0, f.v1, &a, &b)) return -1;
            if (a != NULL) {
                if (nm0 && check_str(nm0, nm1)) return -1;
                nm0 = a;
                nm1 = b;
            }
        }
    }
    PyObject *scope = nm0 ? mkstr(nm0, nm1) : PyUnicode_FromStringAndSize("", 0);
    if (scope == NULL) return -1;
    p = start;
    while (p < end) {
        if (next_field(&p, end, &f)) goto fail;
        if (f.key == 0x12 && scan_span(st, scope, f.v0, f.v1)) goto fail;
    }
    Py_DECREF(scope);
    return 0;
fail:
    Py_DECREF(scope);
    return -1;
}

static PyObject *wire_spans(PyObject *self, PyObject *arg) {
    Py_buffer buf;
    if (PyObject_GetBuffer(arg, &buf, PyBUF_SIMPLE)) return NULL;
    scan_state st = {PyList_New(0), NULL, (ptr)buf.buf, {{NULL, 0}}};
    if (st.out == NULL) goto done;
    ptr p = (ptr)buf.buf, end = p + buf.len;
    field f, g;
    while (p < end) {
        if (next_field(&p, end, &f)) goto error;
        if (f.key != 0x0A) continue;
        ptr q = f.v0;
        while (q < f.v1) {
            if (next_field(&q, f.v1, &g)) goto error;
            if (g.key == 0x12 && scan_scope(&st, g.v0, g.v1)) goto error;
        }
    }
    goto done;
error:
    Py_CLEAR(st.out);
done:
    scan_state_clear(&st);
    PyBuffer_Release(&buf);
    return st.out;
}

/* -- Slots: a compiled key table ------------------------------------------------- */

typedef struct {
    PyObject *str; /* the key (NULL: an empty entry) */
    const char *utf8;
    Py_ssize_t len;
    uint64_t hash;
    long slot, prio;
} slot_entry;

typedef struct {
    PyObject_HEAD
    slot_entry *tab;
    Py_ssize_t mask; /* table size - 1 (a power of two) */
    Py_ssize_t n;    /* slots: max slot + 1 */
    PyObject *keys;  /* frozenset of the keys */
    long events;     /* collect: the slot that counts the span's events (-1: none) */
} SlotsObject;

static const slot_entry *slots_find(const SlotsObject *t, ptr k, Py_ssize_t len) {
    uint64_t h = keyhash(k, len);
    for (Py_ssize_t i = (Py_ssize_t)(h & t->mask);; i = (i + 1) & t->mask) {
        const slot_entry *e = &t->tab[i];
        if (e->str == NULL) return NULL;
        if (e->hash == h && e->len == len && memcmp(e->utf8, k, len) == 0) return e;
    }
}

static void Slots_dealloc(SlotsObject *self) {
    if (self->tab) {
        for (Py_ssize_t i = 0; i <= self->mask; i++) Py_XDECREF(self->tab[i].str);
        PyMem_Free(self->tab);
    }
    Py_XDECREF(self->keys);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Slots_init(SlotsObject *self, PyObject *args, PyObject *kw) {
    PyObject *src;
    long events = -1;
    static char *names[] = {"keys", "events", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|l", names, &src, &events)) return -1;
    if (events < -1 || events >= 64) {
        PyErr_SetString(PyExc_ValueError, "Slots: events is a slot in 0..63");
        return -1;
    }
    PyObject *items = PyDict_Check(src) ? PyDict_Items(src) : PySequence_List(src);
    if (items == NULL) return -1;
    Py_ssize_t count = PyList_GET_SIZE(items), size = 8;
    while (size < 2 * count) size *= 2;
    slot_entry *tab = PyMem_Calloc(size, sizeof(slot_entry));
    PyObject *keys = PySet_New(NULL);
    if (tab == NULL || keys == NULL) {
        PyMem_Free(tab);
        Py_XDECREF(keys);
        Py_DECREF(items);
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t n = 0;
    for (Py_ssize_t j = 0; j < count; j++) {
        PyObject *it = PyList_GET_ITEM(items, j), *key = it;
        long slot = 0, prio = 0;
        if (PyTuple_Check(it)) { /* (key, (slot, priority)) from a dict */
            key = PyTuple_GET_ITEM(it, 0);
            if (!PyArg_ParseTuple(PyTuple_GET_ITEM(it, 1), "ll", &slot, &prio)) goto fail;
        }
        if (!PyUnicode_Check(key) || slot < 0 || slot >= 64) {
            PyErr_SetString(PyExc_ValueError, "Slots: str keys, slots in 0..63");
            goto fail;
        }
        Py_ssize_t len;
        const char *u = PyUnicode_AsUTF8AndSize(key, &len);
        if (u == NULL || PySet_Add(keys, key)) goto fail;
        uint64_t h = keyhash((ptr)u, len);
        Py_ssize_t i = (Py_ssize_t)(h & (size - 1));
        while (tab[i].str && !(tab[i].len == len && memcmp(tab[i].utf8, u, len) == 0))
            i = (i + 1) & (size - 1);
        if (tab[i].str == NULL) {
            Py_INCREF(key);
            tab[i].str = key;
        }
        tab[i].utf8 = u;
        tab[i].len = len;
        tab[i].hash = h;
        tab[i].slot = slot;
        tab[i].prio = prio;
        if (slot + 1 > n) n = slot + 1;
    }
    Py_DECREF(items);
    if (events + 1 > n) n = events + 1;
    self->tab = tab;
    self->mask = size - 1;
    self->n = n;
    self->events = events;
    self->keys = PyFrozenSet_New(keys);
    Py_DECREF(keys);
    return self->keys ? 0 : -1;
fail:
    for (Py_ssize_t i = 0; i < size; i++) Py_XDECREF(tab[i].str);
    PyMem_Free(tab);
    Py_DECREF(keys);
    Py_DECREF(items);
    return -1;
}

static PyObject *Slots_get_n(SlotsObject *self, void *c) { return PyLong_FromSsize_t(self->n); }
static PyObject *Slots_get_events(SlotsObject *self, void *c) {
    if (self->events < 0) Py_RETURN_NONE;
    return PyLong_FromLong(self->events);
}
static PyObject *Slots_get_keys(SlotsObject *self, void *c) {
    Py_INCREF(self->keys);
    return self->keys;
}

static PyGetSetDef Slots_getset[] = {
    {"n", (getter)Slots_get_n, NULL, "max slot + 1", NULL},
    {"keys", (getter)Slots_get_keys, NULL, "the keys, a frozenset", NULL},
    {"events", (getter)Slots_get_events, NULL, "the slot counting events, or None", NULL},
    {NULL},
};

static PyTypeObject SlotsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pipeline._wirescan.Slots",
    .tp_basicsize = sizeof(SlotsObject),
    .tp_dealloc = (destructor)Slots_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Attribute keys compiled for lookup from wire bytes: key -> (slot, priority).",
    .tp_init = (initproc)Slots_init,
    .tp_new = PyType_GenericNew,
    .tp_getset = Slots_getset,
};

/* -- attributes -------------------------------------------------------------------- */

static PyObject *any_value(ptr start, ptr end, PyObject *unset, int depth);

/* A KeyValue: its key (new reference) and value (new reference). */
static int key_value(ptr start, ptr end, PyObject *unset, int depth, PyObject **k,
                     PyObject **v) {
    ptr p = start, k0 = NULL, k1 = NULL, v0 = NULL, v1 = NULL;
    int nvals = 0;
    field f;
    while (p < end) {
        if (next_field(&p, end, &f)) return -1;
        if (f.key == 0x0A) {
            if (k0 && check_str(k0, k1)) return -1;
            k0 = f.v0;
            k1 = f.v1;
        } else if (f.key == 0x12) {
            if (nvals == 0) {
                v0 = f.v0;
                v1 = f.v1;
            }
            nvals++;
        }
    }
    if (k != NULL) { /* NULL: the caller has the key */
        *k = k0 ? mkstr(k0, k1) : PyUnicode_FromStringAndSize("", 0);
        if (*k == NULL) return -1;
    }
    if (nvals == 0) {
        Py_INCREF(unset);
        *v = unset;
    } else if (nvals == 1) {
        *v = any_value(v0, v1, unset, depth);
    } else { /* repeated occurrences of a message field merge: parse them as one */
        Py_ssize_t total = 0;
        p = start;
        while (p < end) {
            if (next_field(&p, end, &f)) goto fail;
            if (f.key == 0x12) total += f.v1 - f.v0;
        }
        uint8_t *joined = PyMem_Malloc(total ? total : 1);
        if (joined == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
        Py_ssize_t at = 0;
        p = start;
        while (p < end) {
            if (next_field(&p, end, &f)) {
                PyMem_Free(joined);
                goto fail;
            }
            if (f.key == 0x12) {
                memcpy(joined + at, f.v0, f.v1 - f.v0);
                at += f.v1 - f.v0;
            }
        }
        *v = any_value(joined, joined + total, unset, depth);
        PyMem_Free(joined);
    }
    if (*v == NULL) goto fail;
    return 0;
fail:
    if (k != NULL) Py_CLEAR(*k);
    return -1;
}

/* Short ASCII string values (providers, models, hosts, operation names) recur from span
 * to span: a direct-mapped cache shares one str per value, decoded and hashed once. */
#define VALUE_CACHE 1024
static name_slot value_cache[VALUE_CACHE];

static PyObject *any_value(ptr start, ptr end, PyObject *unset, int depth) {
    if (depth > MAX_DEPTH) {
        fail("values nested too deeply");
        return NULL;
    }
    int which = 0;
    PyObject *val = unset;
    Py_INCREF(val);
    ptr p = start;
    field f;
    uint64_t u;
    while (p < end) {
        if (next_field(&p, end, &f)) goto fail;
        PyObject *nv = NULL;
        int w = 0;
        switch (f.key) {
        case 0x0A: w = 1; nv = cached_str(value_cache, VALUE_CACHE, 48, f.v0, f.v1); break;
        case 0x10: {
            ptr q = f.v0;
            if (rd_varint(&q, f.v1, &u)) goto fail;
            w = 2;
            nv = PyBool_FromLong(u != 0);
            break;
        }
        case 0x18: {
            ptr q = f.v0;
            if (rd_varint(&q, f.v1, &u)) goto fail;
            w = 3;
            nv = PyLong_FromLongLong((long long)(int64_t)u);
            break;
        }
        case 0x21: {
            double d;
            memcpy(&d, f.v0, 8);
            w = 4;
            nv = PyFloat_FromDouble(d);
            break;
        }
        case 0x2A: { /* array_value */
            PyObject *lst;
            if (which == 5) {
                lst = val;
                Py_INCREF(lst);
            } else {
                lst = PyList_New(0);
                if (lst == NULL) goto fail;
            }
            ptr q = f.v0;
            field g;
            while (q < f.v1) {
                if (next_field(&q, f.v1, &g)) {
                    Py_DECREF(lst);
                    goto fail;
                }
                if (g.key != 0x0A) continue;
                PyObject *x = any_value(g.v0, g.v1, unset, depth + 1);
                if (x == NULL || PyList_Append(lst, x)) {
                    Py_XDECREF(x);
                    Py_DECREF(lst);
                    goto fail;
                }
                Py_DECREF(x);
            }
            w = 5;
            nv = lst;
            break;
        }
        case 0x32: { /* kvlist_value */
            PyObject *d;
            if (which == 6) {
                d = val;
                Py_INCREF(d);
            } else {
                d = PyDict_New();
                if (d == NULL) goto fail;
            }
            ptr q = f.v0;
            field g;
            while (q < f.v1) {
                if (next_field(&q, f.v1, &g)) {
                    Py_DECREF(d);
                    goto fail;
                }
                if (g.key != 0x0A) continue;
                PyObject *k, *x;
                if (key_value(g.v0, g.v1, unset, depth + 1, &k, &x)) {
                    Py_DECREF(d);
                    goto fail;
                }
                int rc = PyDict_SetItem(d, k, x);
                Py_DECREF(k);
                Py_DECREF(x);
                if (rc) {
                    Py_DECREF(d);
                    goto fail;
                }
            }
            w = 6;
            nv = d;
            break;
        }
        case 0x3A: w = 7; nv = PyBytes_FromStringAndSize((const char *)f.v0, f.v1 - f.v0); break;
        default: continue;
        }
        if (nv == NULL) goto fail;
        Py_DECREF(val);
        val = nv;
        which = w;
    }
    return val;
fail:
    Py_DECREF(val);
    return NULL;
}

static PyObject *wire_attributes(PyObject *self, PyObject *args) {
    Py_buffer buf;
    Py_ssize_t s0, s1;
    PyObject *keys, *unset = Py_None;
    if (!PyArg_ParseTuple(args, "y*nnO|O", &buf, &s0, &s1, &keys, &unset)) return NULL;
    PyObject *out = NULL;
    if (s0 < 0 || s1 < s0 || s1 > buf.len) {
        PyErr_SetString(PyExc_IndexError, "span bounds out of range");
        goto done;
    }
    SlotsObject *table = NULL;
    if (PyObject_TypeCheck(keys, &SlotsType)) {
        table = (SlotsObject *)keys;
    } else if (keys != Py_None && !PyAnySet_Check(keys)) {
        PyErr_SetString(PyExc_TypeError, "keys: a frozenset, Slots or None");
        goto done;
    }
    out = PyList_New(0);
    if (out == NULL) goto done;
    ptr p = (ptr)buf.buf + s0, end = (ptr)buf.buf + s1;
    field f;
    while (p < end) {
        if (next_field(&p, end, &f)) goto error;
        if (f.key != 0x4A) continue;
        PyObject *k, *v;
        if (table != NULL) {
            ptr k0, k1;
            if (last_str1(f.v0, f.v1, &k0, &k1)) goto error;
            if (slots_find(table, k0 ? k0 : (ptr) "", k0 ? k1 - k0 : 0) == NULL) continue;
        } else if (keys != Py_None) {
            /* the key alone first: most attributes are not wanted */
            ptr k0, k1;
            if (last_str1(f.v0, f.v1, &k0, &k1)) goto error;
            k = k0 ? mkstr(k0, k1) : PyUnicode_FromStringAndSize("", 0);
            if (k == NULL) goto error;
            int in = PySet_Contains(keys, k);
            Py_DECREF(k);
            if (in < 0) goto error;
            if (!in) continue;
        }
        if (key_value(f.v0, f.v1, unset, 0, &k, &v)) goto error;
        PyObject *item = PyTuple_Pack(2, k, v);
        Py_DECREF(k);
        Py_DECREF(v);
        if (item == NULL || PyList_Append(out, item)) {
            Py_XDECREF(item);
            goto error;
        }
        Py_DECREF(item);
    }
    goto done;
error:
    Py_CLEAR(out);
done:
    PyBuffer_Release(&buf);
    return out;
}

/* collect(raw, b0, b1, slots: Slots, unset) -> (by_slot, mask); see wirescan.py.
 * Fast-call: it runs once per span that an index reads. */
static PyObject *wire_collect(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "collect(raw, b0, b1, slots, unset)");
        return NULL;
    }
    if (!PyObject_TypeCheck(args[3], &SlotsType)) {
        PyErr_SetString(PyExc_TypeError, "collect: slots must be a Slots");
        return NULL;
    }
    Py_ssize_t s0 = PyLong_AsSsize_t(args[1]);
    if (s0 == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t s1 = PyLong_AsSsize_t(args[2]);
    if (s1 == -1 && PyErr_Occurred()) return NULL;
    SlotsObject *t = (SlotsObject *)args[3];
    PyObject *unset = args[4];
    Py_buffer buf;
    if (PyObject_GetBuffer(args[0], &buf, PyBUF_SIMPLE)) return NULL;
    PyObject *by = NULL, *result = NULL;
    long best[64];
    unsigned long long mask = 0;
    if (s0 < 0 || s1 < s0 || s1 > buf.len) {
        PyErr_SetString(PyExc_IndexError, "span bounds out of range");
        goto done;
    }
    by = PyList_New(t->n);
    if (by == NULL) goto done;
    for (Py_ssize_t i = 0; i < t->n; i++) {
        Py_INCREF(Py_None);
        PyList_SET_ITEM(by, i, Py_None);
    }
    ptr p = (ptr)buf.buf + s0, end = (ptr)buf.buf + s1;
    field f;
    long n_events = 0;
    while (p < end) {
        if (next_field(&p, end, &f)) goto done;
        if (f.key != 0x4A) {
            if (f.key == 0x5A) n_events++; /* events = 11, LEN */
            continue;
        }
        ptr k0, k1, x0, x1;
        int simple = kv_simple(f.v0, f.v1, &k0, &k1, &x0, &x1);
        if (!simple && last_str1(f.v0, f.v1, &k0, &k1)) goto done;
        const slot_entry *e = slots_find(t, k0 ? k0 : (ptr) "", k0 ? k1 - k0 : 0);
        if (e == NULL) continue; /* not wanted: no object made */
        PyObject *v;
        if (!simple) {
            if (key_value(f.v0, f.v1, unset, 0, NULL, &v)) goto done;
        } else if (x0 == NULL) {
            Py_INCREF(unset);
            v = unset;
        } else if ((v = any_value(x0, x1, unset, 0)) == NULL) {
            goto done;
        }
        long fi = e->slot;
        if (!(mask & (1ULL << fi)) || e->prio <= best[fi]) {
            best[fi] = e->prio;
            mask |= 1ULL << fi;
            PyObject *old = PyList_GET_ITEM(by, fi);
            PyList_SET_ITEM(by, fi, v); /* steals v */
            Py_DECREF(old);
        } else {
            Py_DECREF(v);
        }
    }
    if (n_events && t->events >= 0) {
        PyObject *c = PyLong_FromLong(n_events);
        if (c == NULL) goto done;
        PyObject *old = PyList_GET_ITEM(by, t->events);
        PyList_SET_ITEM(by, t->events, c);
        Py_DECREF(old);
        mask |= 1ULL << t->events;
    }
    PyObject *m = PyLong_FromUnsignedLongLong(mask);
    if (m == NULL) goto done;
    result = PyTuple_New(2);
    if (result == NULL) {
        Py_DECREF(m);
        goto done;
    }
    PyTuple_SET_ITEM(result, 0, by); /* steals: `by` is not released below */
    PyTuple_SET_ITEM(result, 1, m);
    by = NULL;
done:
    Py_XDECREF(by);
    PyBuffer_Release(&buf);
    return result;
}

/* -- events ------------------------------------------------------------------------ */

/* Whether a KeyValue's key is in the table (an empty key: looked up as ""). */
static int kv_wanted(const SlotsObject *t, ptr v0, ptr v1) {
    ptr k0, k1, x0, x1;
    if (!kv_simple(v0, v1, &k0, &k1, &x0, &x1) && last_str1(v0, v1, &k0, &k1)) return -1;
    return slots_find(t, k0 ? k0 : (ptr) "", k0 ? k1 - k0 : 0) != NULL;
}

/* events(raw, b0, b1, names: Slots, keys: Slots) -> [(time_unix_nano, name, [(key, value)])]
 * of the span's events whose name, up to its first '=', is in `names`, or that carry an
 * attribute whose key is in `names`; each with its attributes in `keys`, in wire order.
 * See wirescan.py. */
static PyObject *wire_events(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "events(raw, b0, b1, names, keys)");
        return NULL;
    }
    if (!PyObject_TypeCheck(args[3], &SlotsType) || !PyObject_TypeCheck(args[4], &SlotsType)) {
        PyErr_SetString(PyExc_TypeError, "events: names and keys must be Slots");
        return NULL;
    }
    Py_ssize_t s0 = PyLong_AsSsize_t(args[1]);
    if (s0 == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t s1 = PyLong_AsSsize_t(args[2]);
    if (s1 == -1 && PyErr_Occurred()) return NULL;
    const SlotsObject *names = (SlotsObject *)args[3], *keys = (SlotsObject *)args[4];
    Py_buffer buf;
    if (PyObject_GetBuffer(args[0], &buf, PyBUF_SIMPLE)) return NULL;
    PyObject *out = NULL;
    if (s0 < 0 || s1 < s0 || s1 > buf.len) {
        PyErr_SetString(PyExc_IndexError, "span bounds out of range");
        goto done;
    }
    out = PyList_New(0);
    if (out == NULL) goto done;
    ptr p = (ptr)buf.buf + s0, end = (ptr)buf.buf + s1;
    field f, g;
    while (p < end) {
        if (next_field(&p, end, &f)) goto error;
        if (f.key != 0x5A) continue; /* events = 11 */
        ptr nm0 = NULL, nm1 = NULL;
        uint64_t t = 0;
        int match = 0;
        ptr q = f.v0;
        while (q < f.v1) {
            if (next_field(&q, f.v1, &g)) goto error;
            if (g.key == 0x09) { /* time_unix_nano = 1, fixed64 */
                t = le64(g.v0);
            } else if (g.key == 0x12) { /* name = 2 */
                if (nm0 && check_str(nm0, nm1)) goto error;
                nm0 = g.v0;
                nm1 = g.v1;
            } else if (g.key == 0x1A && !match) { /* attributes = 3 */
                int w = kv_wanted(names, g.v0, g.v1);
                if (w < 0) goto error;
                match = w;
            }
        }
        if (!match) {
            ptr a = nm0 ? nm0 : (ptr) "", b = nm0 ? nm1 : a;
            ptr eq = memchr(a, '=', (size_t)(b - a));
            match = slots_find(names, a, (eq ? eq : b) - a) != NULL;
        }
        if (!match) {
            if (nm0 && check_str(nm0, nm1)) goto error; /* validated, as the decoder does */
            continue;
        }
        PyObject *attrs = PyList_New(0);
        if (attrs == NULL) goto error;
        q = f.v0;
        while (q < f.v1) {
            if (next_field(&q, f.v1, &g)) {
                Py_DECREF(attrs);
                goto error;
            }
            if (g.key != 0x1A) continue;
            int w = kv_wanted(keys, g.v0, g.v1);
            if (w < 0) {
                Py_DECREF(attrs);
                goto error;
            }
            if (!w) continue;
            PyObject *k, *v, *item;
            if (key_value(g.v0, g.v1, Py_None, 0, &k, &v)) {
                Py_DECREF(attrs);
                goto error;
            }
            item = PyTuple_Pack(2, k, v);
            Py_DECREF(k);
            Py_DECREF(v);
            if (item == NULL || PyList_Append(attrs, item)) {
                Py_XDECREF(item);
                Py_DECREF(attrs);
                goto error;
            }
            Py_DECREF(item);
        }
        PyObject *name = nm0 ? mkstr(nm0, nm1) : PyUnicode_FromStringAndSize("", 0);
        PyObject *time = PyLong_FromUnsignedLongLong((unsigned long long)t);
        PyObject *ev = (name && time) ? PyTuple_Pack(3, time, name, attrs) : NULL;
        Py_XDECREF(name);
        Py_XDECREF(time);
        Py_DECREF(attrs);
        if (ev == NULL || PyList_Append(out, ev)) {
            Py_XDECREF(ev);
            goto error;
        }
        Py_DECREF(ev);
    }
    goto done;
error:
    Py_CLEAR(out);
done:
    PyBuffer_Release(&buf);
    return out;
}

/* -- where attributes and events are; flattened attributes ---------------------------- */

#define MAX_PREFIXES 32

static int utf8_ok(ptr s, ptr e); /* below, with the validation */

/* A tuple of at most MAX_PREFIXES bytes: pointers and lengths, borrowed from it. */
static int prefixes_of(PyObject *t, const char *what, ptr *p, Py_ssize_t *len,
                       Py_ssize_t *n) {
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) > MAX_PREFIXES) {
        PyErr_Format(PyExc_TypeError, "%s: a tuple of at most %d bytes", what, MAX_PREFIXES);
        return -1;
    }
    *n = PyTuple_GET_SIZE(t);
    for (Py_ssize_t i = 0; i < *n; i++) {
        PyObject *b = PyTuple_GET_ITEM(t, i);
        if (!PyBytes_Check(b)) {
            PyErr_Format(PyExc_TypeError, "%s: a tuple of bytes", what);
            return -1;
        }
        p[i] = (ptr)PyBytes_AS_STRING(b);
        len[i] = PyBytes_GET_SIZE(b);
    }
    return 0;
}

static inline int has_prefix(ptr a, ptr b, ptr p, Py_ssize_t n) {
    return b - a >= n && memcmp(a, p, (size_t)n) == 0;
}

/* A KeyValue's key bounds (the last key field; "" when none: *k0 == *k1). */
static int kv_key(ptr v0, ptr v1, ptr *k0, ptr *k1) {
    ptr x0, x1;
    if (!kv_simple(v0, v1, k0, k1, &x0, &x1) && last_str1(v0, v1, k0, k1)) return -1;
    if (*k0 == NULL) *k0 = *k1 = v0;
    return 0;
}

/* An Event's name bounds (field 2; "" when none). */
static int event_name(ptr v0, ptr v1, ptr *n0, ptr *n1) {
    if (last_str(v0, v1, 0x12, n0, n1)) return -1;
    if (*n0 == NULL) *n0 = *n1 = v0;
    return 0;
}

static int span_bounds(PyObject *const *args, Py_buffer *buf, Py_ssize_t *s0, Py_ssize_t *s1) {
    *s0 = PyLong_AsSsize_t(args[1]);
    if (*s0 == -1 && PyErr_Occurred()) return -1;
    *s1 = PyLong_AsSsize_t(args[2]);
    if (*s1 == -1 && PyErr_Occurred()) return -1;
    if (PyObject_GetBuffer(args[0], buf, PyBUF_SIMPLE)) return -1;
    if (*s0 < 0 || *s1 < *s0 || *s1 > buf->len) {
        PyBuffer_Release(buf);
        PyErr_SetString(PyExc_IndexError, "span bounds out of range");
        return -1;
    }
    return 0;
}

/* ranges(raw, b0, b1, attr_prefixes, event_prefixes) -> [(start, end) | None]; see
 * wirescan.py. No Python object is made for an attribute or event. */
static PyObject *wire_ranges(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "ranges(raw, b0, b1, attr_prefixes, event_prefixes)");
        return NULL;
    }
    ptr pre[2 * MAX_PREFIXES];
    Py_ssize_t plen[2 * MAX_PREFIXES], na, ne;
    if (prefixes_of(args[3], "ranges: attr_prefixes", pre, plen, &na)) return NULL;
    if (prefixes_of(args[4], "ranges: event_prefixes", pre + na, plen + na, &ne)) return NULL;
    Py_buffer buf;
    Py_ssize_t s0, s1;
    if (span_bounds(args, &buf, &s0, &s1)) return NULL;
    Py_ssize_t lo[2 * MAX_PREFIXES], hi[2 * MAX_PREFIXES];
    for (Py_ssize_t i = 0; i < na + ne; i++) lo[i] = hi[i] = -1;
    ptr base = (ptr)buf.buf, p = base + s0, end = base + s1;
    PyObject *out = NULL;
    field f;
    while (p < end) {
        if (next_field(&p, end, &f)) goto done;
        ptr k0, k1;
        Py_ssize_t i0, i1;
        if (f.key == 0x4A) { /* attributes = 9 */
            if (kv_key(f.v0, f.v1, &k0, &k1)) goto done;
            i0 = 0;
            i1 = na;
        } else if (f.key == 0x5A) { /* events = 11 */
            if (event_name(f.v0, f.v1, &k0, &k1)) goto done;
            i0 = na;
            i1 = na + ne;
        } else {
            continue;
        }
        for (Py_ssize_t i = i0; i < i1; i++) {
            if (!has_prefix(k0, k1, pre[i], plen[i])) continue;
            if (lo[i] < 0) lo[i] = f.start - base;
            hi[i] = f.v1 - base;
        }
    }
    out = PyList_New(na + ne);
    if (out == NULL) goto done;
    for (Py_ssize_t i = 0; i < na + ne; i++) {
        PyObject *r;
        if (lo[i] < 0) {
            Py_INCREF(Py_None);
            r = Py_None;
        } else if ((r = Py_BuildValue("(nn)", lo[i], hi[i])) == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, i, r);
    }
done:
    PyBuffer_Release(&buf);
    return out;
}

/* Field names of flattened attributes (`role`, `message.content`, `tool_call.id`) recur
 * from span to span: shared like short values. */
#define FIELD_CACHE 512
static name_slot field_cache[FIELD_CACHE];

/* An index: 1 to 18 ASCII digits in [a, b). -1: not one. */
static long long index_of(ptr a, ptr b) {
    if (b <= a || b - a > 18) return -1;
    long long n = 0;
    for (ptr q = a; q < b; q++) {
        if (*q < '0' || *q > '9') return -1;
        n = n * 10 + (*q - '0');
    }
    return n;
}

/* d[key] (a new dict when it is missing or not a dict): a borrowed reference. */
static PyObject *child_dict(PyObject *d, PyObject *key) {
    PyObject *c = PyDict_GetItemWithError(d, key);
    if (c != NULL && PyDict_CheckExact(c)) return c;
    if (c == NULL && PyErr_Occurred()) return NULL;
    c = PyDict_New();
    if (c == NULL) return NULL;
    int rc = PyDict_SetItem(d, key, c);
    Py_DECREF(c);
    return rc ? NULL : c;
}

/* Put one flattened attribute, `<N>.<rest>` after its prefix, into `by` ({N: (fields,
 * groups)}). 0 also when the key is not of that form. */
static int put_flat(PyObject *by, ptr a, ptr b, PyObject *value) {
    ptr dot = memchr(a, '.', (size_t)(b - a));
    if (dot == NULL) return 0;
    long long n = index_of(a, dot);
    if (n < 0) return 0;
    ptr r0 = dot + 1, r1 = b;
    /* the first all-digit segment of rest, with a segment before it and text after it */
    ptr g1 = NULL, m0 = NULL, m1 = NULL;
    for (ptr s = r0; s < r1;) {
        ptr e = memchr(s, '.', (size_t)(r1 - s));
        if (e == NULL) break; /* the last segment: nothing after it */
        if (s > r0 + 1 && e + 1 < r1 && index_of(s, e) >= 0) {
            g1 = s - 1;
            m0 = s;
            m1 = e;
            break;
        }
        s = e + 1;
    }
    PyObject *nk = PyLong_FromLongLong(n);
    if (nk == NULL) return -1;
    PyObject *rec = PyDict_GetItemWithError(by, nk); /* borrowed */
    if (rec == NULL) {
        if (PyErr_Occurred()) goto fail;
        PyObject *fields = PyDict_New(), *groups = PyDict_New();
        rec = (fields && groups) ? PyTuple_Pack(2, fields, groups) : NULL;
        Py_XDECREF(fields);
        Py_XDECREF(groups);
        if (rec == NULL) goto fail;
        int rc = PyDict_SetItem(by, nk, rec);
        Py_DECREF(rec); /* `by` holds it */
        if (rc) goto fail;
    }
    Py_DECREF(nk);
    if (g1 == NULL) {
        PyObject *k = cached_str(field_cache, FIELD_CACHE, 64, r0, r1);
        if (k == NULL) return -1;
        int rc = PyDict_SetItem(PyTuple_GET_ITEM(rec, 0), k, value);
        Py_DECREF(k);
        return rc;
    }
    PyObject *g = cached_str(field_cache, FIELD_CACHE, 64, r0, g1);
    if (g == NULL) return -1;
    PyObject *by_m = child_dict(PyTuple_GET_ITEM(rec, 1), g);
    Py_DECREF(g);
    if (by_m == NULL) return -1;
    PyObject *mk = PyLong_FromLongLong(index_of(m0, m1));
    if (mk == NULL) return -1;
    PyObject *sub = child_dict(by_m, mk);
    Py_DECREF(mk);
    if (sub == NULL) return -1;
    PyObject *k = cached_str(field_cache, FIELD_CACHE, 64, m1 + 1, r1);
    if (k == NULL) return -1;
    int rc = PyDict_SetItem(sub, k, value);
    Py_DECREF(k);
    return rc;
fail:
    Py_DECREF(nk);
    return -1;
}

/* unflatten(raw, b0, b1, prefixes, unset) -> [{N: (fields, groups)}]; see wirescan.py.
 * Attributes with none of the prefixes cost no Python object. */
static PyObject *wire_unflatten(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "unflatten(raw, b0, b1, prefixes, unset)");
        return NULL;
    }
    ptr pre[MAX_PREFIXES];
    Py_ssize_t plen[MAX_PREFIXES], np;
    if (prefixes_of(args[3], "unflatten: prefixes", pre, plen, &np)) return NULL;
    PyObject *unset = args[4];
    Py_buffer buf;
    Py_ssize_t s0, s1;
    if (span_bounds(args, &buf, &s0, &s1)) return NULL;
    PyObject *out = PyList_New(np);
    if (out == NULL) goto done;
    for (Py_ssize_t i = 0; i < np; i++) {
        PyObject *d = PyDict_New();
        if (d == NULL) goto error;
        PyList_SET_ITEM(out, i, d);
    }
    ptr p = (ptr)buf.buf + s0, end = (ptr)buf.buf + s1;
    field f;
    while (p < end) {
        if (next_field(&p, end, &f)) goto error;
        if (f.key != 0x4A) continue; /* attributes = 9 */
        ptr k0, k1, x0, x1;
        int simple = kv_simple(f.v0, f.v1, &k0, &k1, &x0, &x1);
        if (!simple && last_str1(f.v0, f.v1, &k0, &k1)) goto error;
        if (k0 == k1) continue; /* no key, or "": no index after any prefix */
        PyObject *v = NULL;
        for (Py_ssize_t i = 0; i < np; i++) {
            if (!has_prefix(k0, k1, pre[i], plen[i])) continue;
            if (v == NULL) {
                /* a wanted key is read whole, as the Python twin reads it */
                if (!utf8_ok(k0, k1)) {
                    fail("invalid UTF-8 in a string field");
                    goto error;
                }
                if (!simple) {
                    if (key_value(f.v0, f.v1, unset, 0, NULL, &v)) goto error;
                } else if (x0 == NULL) {
                    Py_INCREF(unset);
                    v = unset;
                } else if ((v = any_value(x0, x1, unset, 0)) == NULL) {
                    goto error;
                }
            }
            if (put_flat(PyList_GET_ITEM(out, i), k0 + plen[i], k1, v)) {
                Py_DECREF(v);
                goto error;
            }
        }
        Py_XDECREF(v);
    }
    goto done;
error:
    Py_CLEAR(out);
done:
    PyBuffer_Release(&buf);
    return out;
}

/* -- splice ------------------------------------------------------------------------ */

typedef struct {
    Py_ssize_t start;
    const char *add;
    Py_ssize_t add_len;
    PyObject *drop; /* a set, or NULL */
} patch;

typedef struct {
    const patch *patches;
    Py_ssize_t n, next; /* patches in order of start; the next one to meet */
    ptr base;
    Py_ssize_t *sizes; /* new body sizes of changed messages, in visiting order */
    Py_ssize_t nsizes, cap, at;
    uint8_t *out;
    Py_ssize_t pos;
} splicer;

static int varint_len(uint64_t n) {
    int l = 1;
    while (n > 0x7F) {
        n >>= 7;
        l++;
    }
    return l;
}

static void put_varint(splicer *s, uint64_t n) {
    while (n > 0x7F) {
        s->out[s->pos++] = (uint8_t)((n & 0x7F) | 0x80);
        n >>= 7;
    }
    s->out[s->pos++] = (uint8_t)n;
}

static void put(splicer *s, ptr a, Py_ssize_t n) {
    memcpy(s->out + s->pos, a, n);
    s->pos += n;
}

static int push_size(splicer *s, Py_ssize_t n) {
    if (s->nsizes == s->cap) {
        Py_ssize_t cap = s->cap ? s->cap * 2 : 64;
        Py_ssize_t *m = PyMem_Realloc(s->sizes, cap * sizeof(Py_ssize_t));
        if (m == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        s->sizes = m;
        s->cap = cap;
    }
    s->sizes[s->nsizes++] = n;
    return 0;
}

/* Whether the attribute (a KeyValue body) is to be dropped: 1 yes, 0 no, -1 error. */
static int dropped(PyObject *drop, ptr v0, ptr v1) {
    ptr k0, k1, x0, x1;
    if (!kv_simple(v0, v1, &k0, &k1, &x0, &x1) && last_str1(v0, v1, &k0, &k1)) return -1;
    Py_ssize_t n = k0 ? k1 - k0 : 0;
    int ascii = 1;
    for (Py_ssize_t i = 0; i < n && ascii; i++) ascii = k0[i] < 0x80;
    if (ascii) { /* compared as bytes with the (few) keys: no str made */
        Py_ssize_t pos = 0;
        PyObject *item;
        Py_hash_t hash;
        while (_PySet_NextEntry(drop, &pos, &item, &hash)) {
            Py_ssize_t len;
            const char *u = PyUnicode_Check(item) ? PyUnicode_AsUTF8AndSize(item, &len) : NULL;
            if (u == NULL) { /* not a str, or one with lone surrogates: matches no key */
                PyErr_Clear();
                continue;
            }
            if (len == n && (n == 0 || memcmp(u, k0, (size_t)n) == 0)) return 1;
        }
        return 0;
    }
    PyObject *k = k0 ? mkstr(k0, k1) : PyUnicode_FromStringAndSize("", 0);
    if (k == NULL) return -1;
    int in = PySet_Contains(drop, k);
    Py_DECREF(k);
    return in;
}

/* level 0: request (children: resource_spans 1), 1: ResourceSpans (scope_spans 2),
 * 2: ScopeSpans (spans 2), 3: a Span (patched). Pass 1 (s->out NULL) returns the new body
 * size, -2 when unchanged, -1 on error, and records sizes of changed children; pass 2
 * writes, reading the sizes back in the same order. */
static Py_ssize_t walk(splicer *s, int level, ptr start, ptr end) {
    ptr p = start;
    field f;
    if (level == 3) { /* the span's patches: one, or several in a row that add up */
        const patch *pt = &s->patches[s->next], *last = pt + 1, *stop = s->patches + s->n;
        while (last < stop && last->start == pt->start) last++;
        s->next = last - s->patches;
        Py_ssize_t add = 0;
        int drops = 0;
        for (const patch *q = pt; q < last; q++) {
            add += q->add_len;
            drops |= q->drop != NULL;
        }
        Py_ssize_t size = 0;
        if (!drops) { /* nothing dropped: the body as it is */
            if (s->out) put(s, start, end - start);
            size = end - start;
        }
        while (drops && p < end) {
            if (next_field(&p, end, &f)) return -1;
            int d = 0;
            for (const patch *q = pt; f.key == 0x4A && q < last && !d; q++) {
                if (q->drop && (d = dropped(q->drop, f.v0, f.v1)) < 0) return -1;
            }
            if (d) continue;
            if (s->out) put(s, f.start, p - f.start);
            size += p - f.start;
        }
        if (s->out) { /* then the additions, in order */
            for (const patch *q = pt; q < last; q++) put(s, (ptr)q->add, q->add_len);
        }
        return size + add;
    }
    uint64_t child = level == 0 ? 0x0A : 0x12;
    Py_ssize_t size = 0;
    int changed = 0;
    while (p < end) {
        if (next_field(&p, end, &f)) return -1;
        Py_ssize_t body = -2;
        if (f.key == child && s->next < s->n) {
            Py_ssize_t v0 = f.v0 - s->base, v1 = f.v1 - s->base;
            Py_ssize_t ps = s->patches[s->next].start;
            /* <= v1: an empty span ends its scope (and resource) where it starts */
            if (level == 2 ? ps == v0 : (ps >= v0 && ps <= v1)) {
                if (s->out == NULL) {
                    Py_ssize_t slot = s->nsizes;
                    if (push_size(s, 0)) return -1;
                    body = walk(s, level + 1, f.v0, f.v1);
                    if (body == -1) return -1;
                    s->sizes[slot] = body;
                } else {
                    body = s->sizes[s->at++];
                    if (body != -2) {
                        s->out[s->pos++] = (uint8_t)child; /* the tag, canonical */
                        put_varint(s, (uint64_t)body);
                        if (walk(s, level + 1, f.v0, f.v1) == -1) return -1;
                    } else if (walk(s, level + 1, f.v0, f.v1) == -1) {
                        return -1;
                    }
                }
            } else if (ps < v0 && level > 0) {
                return fail("a patch names no span");
            }
        }
        if (body == -2) {
            if (s->out) put(s, f.start, p - f.start);
            size += p - f.start;
        } else {
            changed = 1;
            size += 1 + varint_len((uint64_t)body) + body;
        }
    }
    return changed ? size : -2;
}

static void free_patches(patch *ps, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) Py_XDECREF(ps[i].drop);
    PyMem_Free(ps);
}

static PyObject *wire_splice(PyObject *self, PyObject *args) {
    PyObject *raw, *plist;
    if (!PyArg_ParseTuple(args, "SO!", &raw, &PyList_Type, &plist)) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(plist);
    if (n == 0) {
        Py_INCREF(raw);
        return raw;
    }
    patch *ps = PyMem_Calloc(n, sizeof(patch));
    if (ps == NULL) return PyErr_NoMemory();
    PyObject *result = NULL;
    /* the list holds the tuples (and they their bytes) while we run */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyList_GET_ITEM(plist, i), *add, *drop;
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 3) {
            PyErr_SetString(PyExc_TypeError, "a patch is (body_start, bytes, drop_keys|None)");
            goto done;
        }
        int overflow;
        long long start = PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(t, 0), &overflow);
        if (start == -1 && PyErr_Occurred()) goto done;
        /* past any encoding's size: names no span (a WireError below, not OverflowError) */
        ps[i].start = overflow > 0   ? PY_SSIZE_T_MAX
                      : overflow < 0 ? PY_SSIZE_T_MIN
                                     : (Py_ssize_t)start;
        add = PyTuple_GET_ITEM(t, 1);
        drop = PyTuple_GET_ITEM(t, 2);
        if (!PyBytes_Check(add) || (drop != Py_None && !PyAnySet_Check(drop))) {
            PyErr_SetString(PyExc_TypeError, "a patch is (body_start, bytes, drop_keys|None)");
            goto done;
        }
        ps[i].add = PyBytes_AS_STRING(add);
        ps[i].add_len = PyBytes_GET_SIZE(add);
        if (drop != Py_None && PySet_GET_SIZE(drop)) {
            Py_INCREF(drop);
            ps[i].drop = drop;
        }
        if (i && ps[i].start < ps[i - 1].start) { /* equal: one span's, in a row */
            fail("patches not sorted by body_start");
            goto done;
        }
    }
    ptr base = (ptr)PyBytes_AS_STRING(raw);
    Py_ssize_t len = PyBytes_GET_SIZE(raw);
    splicer s = {ps, n, 0, base, NULL, 0, 0, 0, NULL, 0};
    Py_ssize_t size = walk(&s, 0, base, base + len);
    if (size == -1) goto done_sizes;
    if (s.next != n) {
        fail("a patch names no span");
        goto done_sizes;
    }
    result = PyBytes_FromStringAndSize(NULL, size);
    if (result == NULL) goto done_sizes;
    s.out = (uint8_t *)PyBytes_AS_STRING(result);
    s.next = 0;
    if (walk(&s, 0, base, base + len) == -1) Py_CLEAR(result);
done_sizes:
    PyMem_Free(s.sizes);
done:
    free_patches(ps, n);
    return result;
}

/* -- grouping by trace (groupbytrace's ingest) --------------------------------------- */

typedef struct {
    Py_ssize_t fs, fe; /* the span's field (tag, length, Span) in the buffer */
    Py_ssize_t next;   /* the next span of the same trace in this scope, -1: none */
} span_ref;

typedef struct {
    Py_ssize_t first, last, n, size;
} trace_run;

/* Every occurrence of field `key` of the message [v0, v1), as encoded (tag and length
 * included), joined: re-embedded, they decode as protobuf reads them (occurrences of a
 * message merge, the last scalar wins). */
static PyObject *fields_of(ptr v0, ptr v1, uint64_t key) {
    ptr p = v0, a = NULL, b = NULL;
    Py_ssize_t total = 0, count = 0;
    field f;
    while (p < v1) {
        if (next_field(&p, v1, &f)) return NULL;
        if (f.key != key) continue;
        if (!count) a = f.start;
        b = f.v1;
        total += f.v1 - f.start;
        count++;
    }
    if (count <= 1) return PyBytes_FromStringAndSize(a ? (const char *)a : "", a ? b - a : 0);
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL) return NULL;
    char *o = PyBytes_AS_STRING(out);
    for (p = v0; p < v1;) {
        if (next_field(&p, v1, &f)) {
            Py_DECREF(out);
            return NULL;
        }
        if (f.key != key) continue;
        memcpy(o, f.start, f.v1 - f.start);
        o += f.v1 - f.start;
    }
    return out;
}

/* A scratch array doubled (or made `first` long): 0, or -1 with MemoryError set. */
static int grow(void **buf, Py_ssize_t *cap, Py_ssize_t first, size_t item) {
    Py_ssize_t n = *cap ? 2 * *cap : first;
    void *grown = PyMem_Realloc(*buf, (size_t)n * item);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *buf = grown;
    *cap = n;
    return 0;
}

/* One ScopeSpans: its spans grouped by trace id into `by_tid` (tid -> (blob, n)); roots'
 * trace ids into `rooted`. refs/runs are scratch arrays, grown as needed. */
static int group_scope(ptr base, ptr v0, ptr v1, PyObject *by_tid, PyObject *rooted,
                       span_ref **refs, Py_ssize_t *rcap, trace_run **runs,
                       Py_ssize_t *ucap, PyObject **last_tid) {
    Py_ssize_t nspans = 0, nruns = 0;
    ptr p = v0;
    field f;
    while (p < v1) {
        if (next_field(&p, v1, &f)) return -1;
        if (f.key != 0x12) continue;
        ptr q = f.v0, t0 = NULL, t1 = NULL;
        int root = 1;
        field g;
        while (q < f.v1) {
            if (next_field(&q, f.v1, &g)) return -1;
            if (g.key == 0x0A) {
                t0 = g.v0;
                t1 = g.v1;
            } else if (g.key == 0x22) {
                root = g.v1 == g.v0;
            }
        }
        Py_ssize_t tl = t0 ? t1 - t0 : 0;
        PyObject *tid;
        if (*last_tid && PyBytes_GET_SIZE(*last_tid) == tl &&
            memcmp(PyBytes_AS_STRING(*last_tid), t0 ? (const char *)t0 : "", tl) == 0) {
            tid = *last_tid;
        } else {
            tid = PyBytes_FromStringAndSize(t0 ? (const char *)t0 : "", tl);
            if (tid == NULL) return -1;
            Py_XDECREF(*last_tid);
            *last_tid = tid;
        }
        if (nspans == *rcap && grow((void **)refs, rcap, 256, sizeof(span_ref))) return -1;
        span_ref *r = &(*refs)[nspans];
        r->fs = f.start - base;
        r->fe = f.v1 - base;
        r->next = -1;
        PyObject *at = PyDict_GetItemWithError(by_tid, tid); /* borrowed */
        Py_ssize_t u;
        if (at == NULL) {
            if (PyErr_Occurred()) return -1;
            if (nruns == *ucap && grow((void **)runs, ucap, 64, sizeof(trace_run))) return -1;
            u = nruns++;
            (*runs)[u].first = (*runs)[u].last = nspans;
            (*runs)[u].n = 0;
            (*runs)[u].size = 0;
            PyObject *idx = PyLong_FromSsize_t(u);
            if (idx == NULL) return -1;
            int err = PyDict_SetItem(by_tid, tid, idx);
            Py_DECREF(idx);
            if (err) return -1;
        } else {
            u = PyLong_AsSsize_t(at);
            (*refs)[(*runs)[u].last].next = nspans;
            (*runs)[u].last = nspans;
        }
        (*runs)[u].n += 1;
        (*runs)[u].size += r->fe - r->fs;
        if (root && PySet_Add(rooted, tid)) return -1;
        nspans++;
    }
    /* the runs' spans, joined: the dict's values replaced in place (same keys) */
    Py_ssize_t pos = 0, u = 0;
    PyObject *k, *v;
    while (PyDict_Next(by_tid, &pos, &k, &v)) {
        trace_run *run = &(*runs)[u++];
        PyObject *blob = PyBytes_FromStringAndSize(NULL, run->size);
        if (blob == NULL) return -1;
        char *out = PyBytes_AS_STRING(blob);
        for (Py_ssize_t i = run->first; i >= 0; i = (*refs)[i].next) {
            Py_ssize_t n = (*refs)[i].fe - (*refs)[i].fs;
            memcpy(out, base + (*refs)[i].fs, n);
            out += n;
        }
        PyObject *val = Py_BuildValue("(Nn)", blob, run->n);
        if (val == NULL) return -1;
        int err = PyDict_SetItem(by_tid, k, val);
        Py_DECREF(val);
        if (err) return -1;
    }
    return 0;
}

static PyObject *wire_group(PyObject *self, PyObject *arg) {
    Py_buffer buf;
    if (PyObject_GetBuffer(arg, &buf, PyBUF_SIMPLE)) return NULL;
    ptr base = buf.buf, end = base + buf.len, p = base;
    PyObject *groups = PyList_New(0), *rooted = PySet_New(NULL), *last_tid = NULL;
    PyObject *result = NULL;
    span_ref *refs = NULL;
    trace_run *runs = NULL;
    Py_ssize_t rcap = 0, ucap = 0;
    field f, g;
    if (groups == NULL || rooted == NULL) goto done;
    while (p < end) {
        if (next_field(&p, end, &f)) goto done;
        if (f.key != 0x0A) continue; /* not resource_spans */
        ptr q;
        PyObject *res = fields_of(f.v0, f.v1, 0x0A), *url = res ? fields_of(f.v0, f.v1, 0x1A) : NULL;
        if (url == NULL) {
            Py_XDECREF(res);
            goto done;
        }
        PyObject *rf = Py_BuildValue("(NN)", res, url);
        if (rf == NULL) goto done;
        for (q = f.v0; q < f.v1;) {
            if (next_field(&q, f.v1, &g)) goto fail_rf;
            if (g.key != 0x12) continue; /* not scope_spans */
            PyObject *sc = fields_of(g.v0, g.v1, 0x0A), *su = sc ? fields_of(g.v0, g.v1, 0x1A) : NULL;
            if (su == NULL) {
                Py_XDECREF(sc);
                goto fail_rf;
            }
            PyObject *by_tid = PyDict_New();
            if (by_tid == NULL || group_scope(base, g.v0, g.v1, by_tid, rooted, &refs, &rcap,
                                              &runs, &ucap, &last_tid)) {
                Py_XDECREF(by_tid);
                Py_DECREF(sc);
                Py_DECREF(su);
                goto fail_rf;
            }
            PyObject *item = Py_BuildValue("(O(NN)N)", rf, sc, su, by_tid);
            if (item == NULL || PyList_Append(groups, item)) {
                Py_XDECREF(item);
                goto fail_rf;
            }
            Py_DECREF(item);
        }
        Py_DECREF(rf);
        continue;
    fail_rf:
        Py_DECREF(rf);
        goto done;
    }
    result = PyTuple_Pack(2, groups, rooted);
done:
    Py_XDECREF(groups);
    Py_XDECREF(rooted);
    Py_XDECREF(last_tid);
    PyMem_Free(refs);
    PyMem_Free(runs);
    PyBuffer_Release(&buf);
    return result;
}

/* -- validation (the receivers') -------------------------------------------------- */

#define SLOTS 33 /* field numbers 0..32 per message type; above: unknown fields */

/* Strict UTF-8, as protobuf checks proto3 strings: no overlongs, surrogates or code
 * points past U+10FFFF. */
static int utf8_ok(ptr s, ptr e) {
    /* all ASCII, the usual case: the whole string eight bytes at a time (the last word
       overlapping the one before, a short string in one word), then no per-byte work */
    Py_ssize_t n = e - s;
    uint64_t acc = 0;
    if (n <= 8) {
        memcpy(&acc, s, (size_t)n);
    } else {
        ptr q = s;
        for (; e - q > 32; q += 32) {
            uint64_t a, b, c, d;
            memcpy(&a, q, 8);
            memcpy(&b, q + 8, 8);
            memcpy(&c, q + 16, 8);
            memcpy(&d, q + 24, 8);
            acc |= a | b | c | d;
        }
        for (; e - q > 8; q += 8) {
            uint64_t v;
            memcpy(&v, q, 8);
            acc |= v;
        }
        uint64_t v;
        memcpy(&v, e - 8, 8);
        acc |= v;
    }
    if (!(acc & 0x8080808080808080ull)) return 1;
    while (s < e) {
        uint8_t c = *s;
        if (c < 0x80) {
            s++;
            while (e - s >= 8) { /* ASCII, eight bytes at a time */
                uint64_t v;
                memcpy(&v, s, 8);
                if (v & 0x8080808080808080ull) break;
                s += 8;
            }
            continue;
        }
        if (c < 0xC2) return 0;
        if (c < 0xE0) {
            if (e - s < 2 || (s[1] & 0xC0) != 0x80) return 0;
            s += 2;
            continue;
        }
        if (c < 0xF0) {
            if (e - s < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
            if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] >= 0xA0)) return 0;
            s += 3;
            continue;
        }
        if (c < 0xF5) {
            if (e - s < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 ||
                (s[3] & 0xC0) != 0x80)
                return 0;
            if ((c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] >= 0x90)) return 0;
            s += 4;
            continue;
        }
        return 0;
    }
    return 1;
}

typedef struct {
    const uint8_t *table; /* per message type, per field: wire type, kind, child type */
    Py_ssize_t ntypes;
    int span_type, span_field; /* what to count: ScopeSpans.spans */
    int span_msg, kv_type, any_type; /* Span, KeyValue and AnyValue */
    Py_ssize_t spans;
    int bad_ids; /* a span's trace_id, span_id or parent_span_id has a bad length */
} check_state;

enum { K_UNKNOWN = 0, K_SCALAR = 1, K_STRING = 2, K_BYTES = 3, K_MESSAGE = 4 };

/* A message of type `type` at nesting level `level` (the request is 1), as protobuf's
 * decoder checks it: framing, wire types, UTF-8 of strings, nesting up to 100 levels;
 * a known field with another wire type is an unknown field, as protobuf reads it. */
static int check_msg(check_state *st, ptr p, ptr end, int type, int level) {
    field f;
    if (type == st->kv_type) {
        /* the usual attribute, `0A <key> [12 <AnyValue>]`, with a string value or none:
           the same checks without walking it field by field */
        ptr k0, k1, x0, x1;
        if (kv_simple(p, end, &k0, &k1, &x0, &x1)) {
            if (!utf8_ok(k0, k1)) return fail("invalid UTF-8 in a string field");
            if (x0 == NULL) return 0;
            if (level >= MAX_DEPTH) return fail("messages nested too deeply");
            if (x0[0] == 0x0A) { /* string_value, alone */
                ptr q = x0 + 1;
                uint64_t n = 0;
                for (int shift = 0; q < x1 && shift <= 28; shift += 7) {
                    uint8_t b = *q++;
                    n |= (uint64_t)(b & 0x7F) << shift;
                    if (b < 0x80) {
                        if (n == (uint64_t)(x1 - q))
                            return utf8_ok(q, x1) ? 0 : fail("invalid UTF-8 in a string field");
                        break;
                    }
                }
            }
            return check_msg(st, x0, x1, st->any_type, level + 1);
        }
    }
    /* a Span's ids: the last occurrence of each counts, as when decoded */
    Py_ssize_t ids[3] = {-1, -1, -1};
    while (p < end) {
        if (next_field(&p, end, &f)) return -1;
        uint64_t num = f.key >> 3;
        if (f.key > 0xFFFFFFFFu || num > 536870911u) return fail("field number out of range");
        if (num >= SLOTS) continue;
        const uint8_t *e = st->table + ((Py_ssize_t)type * SLOTS + (Py_ssize_t)num) * 3;
        if (e[1] == K_UNKNOWN || e[0] != (f.key & 7)) continue;
        if (e[1] == K_STRING) {
            if (!utf8_ok(f.v0, f.v1)) return fail("invalid UTF-8 in a string field");
        } else if (e[1] == K_MESSAGE) {
            if (level >= MAX_DEPTH) return fail("messages nested too deeply");
            if (type == st->span_type && (int)num == st->span_field) st->spans++;
            if (check_msg(st, f.v0, f.v1, e[2], level + 1)) return -1;
        } else if (type == st->span_msg && e[1] == K_BYTES) {
            if (num == 1) ids[0] = f.v1 - f.v0;
            else if (num == 2) ids[1] = f.v1 - f.v0;
            else if (num == 4) ids[2] = f.v1 - f.v0;
        }
    }
    if (type == st->span_msg && !((ids[0] <= 0 || ids[0] == 16) && (ids[1] <= 0 || ids[1] == 8) &&
                                  (ids[2] <= 0 || ids[2] == 8)))
        st->bad_ids = 1;
    return 0;
}

static PyObject *wire_check(PyObject *self, PyObject *args) {
    Py_buffer buf, tab;
    int span_type, span_field, kv_type, any_type;
    if (!PyArg_ParseTuple(args, "y*y*iiii", &buf, &tab, &span_type, &span_field, &kv_type,
                          &any_type))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t ntypes = tab.len / (SLOTS * 3);
    if (tab.len % (SLOTS * 3) != 0 || span_type < 0 || span_type >= ntypes || span_field < 0 ||
        span_field >= SLOTS || kv_type < 0 || kv_type >= ntypes || any_type < 0 ||
        any_type >= ntypes) {
        PyErr_SetString(PyExc_ValueError, "check: malformed type table");
        goto done;
    }
    int span_msg = ((const uint8_t *)tab.buf)[(span_type * SLOTS + span_field) * 3 + 2];
    check_state st = {tab.buf, ntypes, span_type, span_field, span_msg, kv_type, any_type, 0, 0};
    ptr base = buf.buf;
    if (check_msg(&st, base, base + buf.len, 0, 1) == 0)
        result = Py_BuildValue("(nO)", st.spans, st.bad_ids ? Py_False : Py_True);
done:
    PyBuffer_Release(&buf);
    PyBuffer_Release(&tab);
    return result;
}

static PyObject *wire_untrack(PyObject *self, PyObject *arg) {
    if (!PyList_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "untrack: want a list");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(arg); i++) {
        PyObject *o = PyList_GET_ITEM(arg, i);
        if (PyObject_IS_GC(o)) PyObject_GC_UnTrack(o);
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"spans", wire_spans, METH_O, "Every span's cheap fields; see pipeline.wirescan."},
    {"attributes", wire_attributes, METH_VARARGS, "A span's wanted attributes."},
    {"collect", (PyCFunction)(void (*)(void))wire_collect, METH_FASTCALL, "A span's wanted attributes, by slot."},
    {"events", (PyCFunction)(void (*)(void))wire_events, METH_FASTCALL, "A span's wanted events."},
    {"ranges", (PyCFunction)(void (*)(void))wire_ranges, METH_FASTCALL, "Where attributes and events with given prefixes are."},
    {"unflatten", (PyCFunction)(void (*)(void))wire_unflatten, METH_FASTCALL, "Flattened attributes under prefixes, grouped by index."},
    {"splice", wire_splice, METH_VARARGS, "Append attributes to spans in an encoding."},
    {"untrack", wire_untrack, METH_O, "Take objects off the cyclic GC's lists."},
    {"check", wire_check, METH_VARARGS, "Validate a request as protobuf's decoder does; (spans, ids_ok)."},
    {"group", wire_group, METH_O, "Spans grouped by resource, scope and trace id."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_wirescan", NULL, -1, methods};

PyMODINIT_FUNC PyInit__wirescan(void) {
    if (PyType_Ready(&SlotsType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&SlotsType);
    if (PyModule_AddObject(m, "Slots", (PyObject *)&SlotsType) < 0) {
        Py_DECREF(&SlotsType);
        goto fail;
    }
    PyObject *py = PyImport_ImportModule("pipeline.wirescan");
    if (py == NULL) goto fail;
    WireError = PyObject_GetAttrString(py, "WireError");
    Py_DECREF(py);
    if (WireError == NULL) goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
