/* The native half of pipeline/jsonwire.py: OTLP JSON (a TracesData or an
 * ExportTraceServiceRequest) straight to protobuf wire bytes, in one pass over the text,
 * with no Python object per value.
 *
 *   decode(body: bytes) -> (encoding: bytes, spans: int) | None
 *
 * None means "not here": anything this parser does not take on (an error of any kind, a
 * null, a repeated key, keys written with escapes, numbers it would have to round) is
 * left to the Python path (msgspec + pipeline/jsonwire.py), which accepts or rejects it
 * and says why. So this code needs to be right only about what it accepts; the tests hold
 * its output to the Python path's and to protobuf's own JSON parser.
 *
 * Fields are written in the order the JSON gives them (any order is valid protobuf);
 * proto3 defaults (0, "", empty ids) are left out, message fields and oneof members are
 * written when present. Keys are taken in lowerCamelCase or as the proto field names. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 100

typedef const unsigned char *ptr;

typedef struct {
    ptr p, end;
} In;

typedef struct {
    unsigned char *b;
    size_t n, cap;
    int nomem;
} Out;

/* -- output ---------------------------------------------------------------------------- */

static int grow(Out *o, size_t k) {
    if (o->n + k <= o->cap) return 0;
    size_t cap = o->cap ? o->cap : 4096;
    while (cap < o->n + k) cap *= 2;
    unsigned char *b = PyMem_Realloc(o->b, cap);
    if (b == NULL) {
        o->nomem = 1;
        return -1;
    }
    o->b = b;
    o->cap = cap;
    return 0;
}

static inline int put(Out *o, const void *d, size_t k) {
    if (grow(o, k) < 0) return -1;
    memcpy(o->b + o->n, d, k);
    o->n += k;
    return 0;
}

static inline int varint_len(uint64_t v) {
    int k = 1;
    while (v >= 0x80) {
        v >>= 7;
        k++;
    }
    return k;
}

static inline int put_varint(Out *o, uint64_t v) {
    if (grow(o, 10) < 0) return -1;
    unsigned char *q = o->b + o->n;
    while (v >= 0x80) {
        *q++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *q++ = (unsigned char)v;
    o->n = (size_t)(q - o->b);
    return 0;
}

static inline int put_fixed64(Out *o, uint64_t v) {
    unsigned char t[8];
    for (int i = 0; i < 8; i++) t[i] = (unsigned char)(v >> (8 * i));
    return put(o, t, 8);
}

static inline int put_fixed32(Out *o, uint32_t v) {
    unsigned char t[4];
    for (int i = 0; i < 4; i++) t[i] = (unsigned char)(v >> (8 * i));
    return put(o, t, 4);
}

/* A length-delimited field: the tag, then room for a 5-byte length; `close_len` writes the
 * length and moves the body back over the room it did not need. */
static inline long open_len(Out *o, unsigned tag) {
    if (put_varint(o, tag) < 0 || grow(o, 5) < 0) return -1;
    long mark = (long)o->n;
    o->n += 5;
    return mark;
}

static inline void close_len(Out *o, long mark) {
    size_t body = o->n - (size_t)mark - 5;
    int k = varint_len(body);
    unsigned char *q = o->b + mark;
    if (k < 5) memmove(q + k, q + 5, body);
    uint64_t v = body;
    while (v >= 0x80) {
        *q++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *q = (unsigned char)v;
    o->n -= (size_t)(5 - k);
}

/* -- JSON lexing ------------------------------------------------------------------------ */

static inline void ws(In *in) {
    while (in->p < in->end) {
        unsigned char c = *in->p;
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
            in->p++;
        else
            break;
    }
}

static inline int peek(In *in) {
    ws(in);
    return in->p < in->end ? *in->p : -1;
}

static inline int eat(In *in, unsigned char c) {
    ws(in);
    if (in->p < in->end && *in->p == c) {
        in->p++;
        return 1;
    }
    return 0;
}

/* The length of a valid UTF-8 sequence starting at p (at most n bytes there), 0 if invalid
 * (overlong forms, surrogates and code points past U+10FFFF are invalid). */
static inline int utf8_seq(ptr p, size_t n) {
    unsigned char c = p[0];
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return (n >= 2 && (p[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && p[1] < 0xA0) return 0;
        if (c == 0xED && p[1] >= 0xA0) return 0;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && p[1] < 0x90) return 0;
        if (c == 0xF4 && p[1] >= 0x90) return 0;
        return 4;
    }
    return 0;
}

static inline int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int put_utf8(Out *o, uint32_t cp) {
    unsigned char t[4];
    int k;
    if (cp < 0x80) {
        t[0] = (unsigned char)cp;
        k = 1;
    } else if (cp < 0x800) {
        t[0] = (unsigned char)(0xC0 | (cp >> 6));
        t[1] = (unsigned char)(0x80 | (cp & 0x3F));
        k = 2;
    } else if (cp < 0x10000) {
        t[0] = (unsigned char)(0xE0 | (cp >> 12));
        t[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        t[2] = (unsigned char)(0x80 | (cp & 0x3F));
        k = 3;
    } else {
        t[0] = (unsigned char)(0xF0 | (cp >> 18));
        t[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        t[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        t[3] = (unsigned char)(0x80 | (cp & 0x3F));
        k = 4;
    }
    return put(o, t, (size_t)k);
}

static int read_hex4(In *in, uint32_t *cp) {
    if (in->end - in->p < 4) return -1;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(in->p[i]);
        if (h < 0) return -1;
        v = (v << 4) | (uint32_t)h;
    }
    in->p += 4;
    *cp = v;
    return 0;
}

/* A JSON string (at its opening quote, whitespace skipped), its content decoded into `o`
 * (or only checked when `o` is NULL). -1: not a valid string, or a lone surrogate. */
static int string(In *in, Out *o) {
    if (in->p >= in->end || *in->p != '"') return -1;
    in->p++;
    for (;;) {
        ptr run = in->p;
        while (in->p < in->end) {
            unsigned char c = *in->p;
            if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) break;
            in->p++;
        }
        if (o != NULL && in->p > run && put(o, run, (size_t)(in->p - run)) < 0) return -1;
        if (in->p >= in->end) return -1;
        unsigned char c = *in->p;
        if (c == '"') {
            in->p++;
            return 0;
        }
        if (c < 0x20) return -1;
        if (c >= 0x80) {
            int k = utf8_seq(in->p, (size_t)(in->end - in->p));
            if (k == 0) return -1;
            if (o != NULL && put(o, in->p, (size_t)k) < 0) return -1;
            in->p += k;
            continue;
        }
        /* an escape */
        in->p++;
        if (in->p >= in->end) return -1;
        unsigned char e = *in->p++;
        unsigned char lit;
        switch (e) {
        case '"': lit = '"'; break;
        case '\\': lit = '\\'; break;
        case '/': lit = '/'; break;
        case 'b': lit = '\b'; break;
        case 'f': lit = '\f'; break;
        case 'n': lit = '\n'; break;
        case 'r': lit = '\r'; break;
        case 't': lit = '\t'; break;
        case 'u': {
            uint32_t cp;
            if (read_hex4(in, &cp) < 0) return -1;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo;
                if (in->end - in->p < 2 || in->p[0] != '\\' || in->p[1] != 'u') return -1;
                in->p += 2;
                if (read_hex4(in, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF) return -1;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return -1;
            }
            if (o != NULL && put_utf8(o, cp) < 0) return -1;
            continue;
        }
        default:
            return -1;
        }
        if (o != NULL && put(o, &lit, 1) < 0) return -1;
    }
}

/* A JSON number's text: [start, end) and whether it is an integer (no fraction or
 * exponent). -1 if the grammar is broken. */
static int number(In *in, ptr *start, int *integral) {
    ptr p = in->p, end = in->end;
    *start = p;
    *integral = 1;
    if (p < end && *p == '-') p++;
    if (p >= end) return -1;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') p++;
    } else {
        return -1;
    }
    if (p < end && *p == '.') {
        *integral = 0;
        p++;
        if (p >= end || *p < '0' || *p > '9') return -1;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        *integral = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return -1;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    in->p = p;
    return 0;
}

static int literal(In *in, const char *word) {
    size_t k = strlen(word);
    if ((size_t)(in->end - in->p) < k || memcmp(in->p, word, k) != 0) return -1;
    in->p += k;
    return 0;
}

/* Any JSON value, checked and skipped (unknown fields). */
static int skip(In *in, int depth) {
    if (depth > MAX_DEPTH) return -1;
    int c = peek(in);
    ptr s;
    int integral;
    switch (c) {
    case '"':
        return string(in, NULL);
    case '{':
        in->p++;
        if (eat(in, '}')) return 0;
        for (;;) {
            ws(in);
            if (string(in, NULL) < 0 || !eat(in, ':') || skip(in, depth + 1) < 0) return -1;
            if (eat(in, ',')) continue;
            return eat(in, '}') ? 0 : -1;
        }
    case '[':
        in->p++;
        if (eat(in, ']')) return 0;
        for (;;) {
            if (skip(in, depth + 1) < 0) return -1;
            if (eat(in, ',')) continue;
            return eat(in, ']') ? 0 : -1;
        }
    case 't':
        return literal(in, "true");
    case 'f':
        return literal(in, "false");
    case 'n':
        return literal(in, "null");
    default:
        return number(in, &s, &integral);
    }
}

/* -- scalar values ---------------------------------------------------------------------- */

/* Decimal digits [p, e) (an optional '-') as a 64-bit value: *neg and the magnitude. */
static int digits(ptr p, ptr e, int *neg, uint64_t *mag) {
    *neg = 0;
    if (p < e && *p == '-') {
        *neg = 1;
        p++;
    }
    if (p >= e || e - p > 20) return -1;
    if (*p == '0' && e - p > 1) return -1; /* JSON has no leading zeros */
    uint64_t v = 0;
    for (; p < e; p++) {
        if (*p < '0' || *p > '9') return -1;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    *mag = v;
    return 0;
}

/* An integer: a JSON integer or a string holding one. Signed values come back as their
 * 64-bit two's complement; the range is [lo, hi] (hi as unsigned for uint64). */
static int integer(In *in, int is_signed, int64_t lo, uint64_t hi, uint64_t *out) {
    int c = peek(in);
    ptr s, e;
    int integral, neg;
    uint64_t mag;
    if (c == '"') {
        in->p++;
        s = in->p;
        while (in->p < in->end && *in->p != '"' && *in->p != '\\') in->p++;
        if (in->p >= in->end || *in->p != '"') return -1;
        e = in->p;
        in->p++;
    } else {
        if (number(in, &s, &integral) < 0 || !integral) return -1;
        e = in->p;
    }
    if (digits(s, e, &neg, &mag) < 0) return -1;
    if (neg) {
        if (!is_signed || mag == 0) {
            if (mag != 0) return -1;
            *out = 0;
            return 0;
        }
        if (mag > (uint64_t)INT64_MAX + 1) return -1;
        int64_t v = (mag == (uint64_t)INT64_MAX + 1) ? INT64_MIN : -(int64_t)mag;
        if (v < lo) return -1;
        *out = (uint64_t)v;
        return 0;
    }
    if (mag > hi) return -1;
    *out = mag;
    return 0;
}

/* A double: a JSON number or "NaN"/"Infinity"/"-Infinity". */
static int dbl(In *in, double *out) {
    int c = peek(in);
    if (c == '"') {
        if (literal(in, "\"NaN\"") == 0) {
            *out = Py_NAN;
            return 0;
        }
        if (literal(in, "\"Infinity\"") == 0) {
            *out = Py_HUGE_VAL;
            return 0;
        }
        if (literal(in, "\"-Infinity\"") == 0) {
            *out = -Py_HUGE_VAL;
            return 0;
        }
        return -1;
    }
    ptr s;
    int integral;
    if (number(in, &s, &integral) < 0) return -1;
    size_t k = (size_t)(in->p - s);
    char buf[64];
    if (k >= sizeof buf) return -1;
    memcpy(buf, s, k);
    buf[k] = 0;
    char *end = NULL;
    double v = PyOS_string_to_double(buf, &end, NULL);
    if (v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    if (end != buf + k) return -1;
    *out = v;
    return 0;
}

/* -- messages --------------------------------------------------------------------------- */

typedef struct Ctx {
    In in;
    Out out;
    long spans;
} Ctx;

enum kind {
    K_STR,     /* string, left out when empty */
    K_ID16,    /* hex trace id */
    K_ID8,     /* hex span id */
    K_U32,     /* varint uint32 (counts), left out when 0 */
    K_KIND,    /* enum SpanKind */
    K_CODE,    /* enum StatusCode */
    K_FIXED64, /* left out when 0 */
    K_FIXED32, /* left out when 0 */
    K_MSG,     /* a message field: written when present */
    K_REP,     /* repeated message */
    K_REPSTR,  /* repeated string */
    /* AnyValue's oneof: always written */
    K_OSTR,
    K_OBOOL,
    K_OI64,
    K_ODBL,
    K_OMSG,
    K_OBYTES,
    K_OI32,
};

struct Msg;
typedef struct Field {
    const char *name;
    unsigned char len;
    unsigned char kind;
    unsigned char tag; /* field number << 3 | wire type */
    unsigned char number;
    const struct Msg *sub;
} Field;

typedef struct Msg {
    const Field *fields;
    int n;
    int is_span;
    int is_any;
} Msg;

#define F(name, kind, number, wire, sub) \
    {name, (unsigned char)(sizeof(name) - 1), kind, (unsigned char)(((number) << 3) | (wire)), number, sub}

extern const Msg M_ANY, M_KV, M_ARRAY, M_KVLIST, M_STATUS, M_EVENT, M_LINK, M_SPAN, M_SCOPE,
    M_SCOPE_SPANS, M_ENTITY, M_RESOURCE, M_RESOURCE_SPANS, M_TOP;

static const Field F_ANY[] = {
    F("stringValue", K_OSTR, 1, 2, NULL),      F("string_value", K_OSTR, 1, 2, NULL),
    F("boolValue", K_OBOOL, 2, 0, NULL),       F("bool_value", K_OBOOL, 2, 0, NULL),
    F("intValue", K_OI64, 3, 0, NULL),         F("int_value", K_OI64, 3, 0, NULL),
    F("doubleValue", K_ODBL, 4, 1, NULL),      F("double_value", K_ODBL, 4, 1, NULL),
    F("arrayValue", K_OMSG, 5, 2, &M_ARRAY),   F("array_value", K_OMSG, 5, 2, &M_ARRAY),
    F("kvlistValue", K_OMSG, 6, 2, &M_KVLIST), F("kvlist_value", K_OMSG, 6, 2, &M_KVLIST),
    F("bytesValue", K_OBYTES, 7, 2, NULL),     F("bytes_value", K_OBYTES, 7, 2, NULL),
    F("stringValueStrindex", K_OI32, 8, 0, NULL),
    F("string_value_strindex", K_OI32, 8, 0, NULL),
};
static const Field F_KV[] = {
    F("key", K_STR, 1, 2, NULL),
    F("value", K_MSG, 2, 2, &M_ANY),
};
static const Field F_ARRAY[] = {F("values", K_REP, 1, 2, &M_ANY)};
static const Field F_KVLIST[] = {F("values", K_REP, 1, 2, &M_KV)};
static const Field F_STATUS[] = {
    F("message", K_STR, 2, 2, NULL),
    F("code", K_CODE, 3, 0, NULL),
};
static const Field F_EVENT[] = {
    F("timeUnixNano", K_FIXED64, 1, 1, NULL),
    F("time_unix_nano", K_FIXED64, 1, 1, NULL),
    F("name", K_STR, 2, 2, NULL),
    F("attributes", K_REP, 3, 2, &M_KV),
    F("droppedAttributesCount", K_U32, 4, 0, NULL),
    F("dropped_attributes_count", K_U32, 4, 0, NULL),
};
static const Field F_LINK[] = {
    F("traceId", K_ID16, 1, 2, NULL),
    F("trace_id", K_ID16, 1, 2, NULL),
    F("spanId", K_ID8, 2, 2, NULL),
    F("span_id", K_ID8, 2, 2, NULL),
    F("traceState", K_STR, 3, 2, NULL),
    F("trace_state", K_STR, 3, 2, NULL),
    F("attributes", K_REP, 4, 2, &M_KV),
    F("droppedAttributesCount", K_U32, 5, 0, NULL),
    F("dropped_attributes_count", K_U32, 5, 0, NULL),
    F("flags", K_FIXED32, 6, 5, NULL),
};
static const Field F_SPAN[] = {
    F("traceId", K_ID16, 1, 2, NULL),
    F("spanId", K_ID8, 2, 2, NULL),
    F("parentSpanId", K_ID8, 4, 2, NULL),
    F("name", K_STR, 5, 2, NULL),
    F("kind", K_KIND, 6, 0, NULL),
    F("startTimeUnixNano", K_FIXED64, 7, 1, NULL),
    F("endTimeUnixNano", K_FIXED64, 8, 1, NULL),
    F("attributes", K_REP, 9, 2, &M_KV),
    F("status", K_MSG, 15, 2, &M_STATUS),
    F("traceState", K_STR, 3, 2, NULL),
    F("flags", K_FIXED32, 16, 5, NULL),
    F("droppedAttributesCount", K_U32, 10, 0, NULL),
    F("events", K_REP, 11, 2, &M_EVENT),
    F("droppedEventsCount", K_U32, 12, 0, NULL),
    F("links", K_REP, 13, 2, &M_LINK),
    F("droppedLinksCount", K_U32, 14, 0, NULL),
    F("trace_id", K_ID16, 1, 2, NULL),
    F("span_id", K_ID8, 2, 2, NULL),
    F("trace_state", K_STR, 3, 2, NULL),
    F("parent_span_id", K_ID8, 4, 2, NULL),
    F("start_time_unix_nano", K_FIXED64, 7, 1, NULL),
    F("end_time_unix_nano", K_FIXED64, 8, 1, NULL),
    F("dropped_attributes_count", K_U32, 10, 0, NULL),
    F("dropped_events_count", K_U32, 12, 0, NULL),
    F("dropped_links_count", K_U32, 14, 0, NULL),
};
static const Field F_SCOPE[] = {
    F("name", K_STR, 1, 2, NULL),
    F("version", K_STR, 2, 2, NULL),
    F("attributes", K_REP, 3, 2, &M_KV),
    F("droppedAttributesCount", K_U32, 4, 0, NULL),
    F("dropped_attributes_count", K_U32, 4, 0, NULL),
};
static const Field F_SCOPE_SPANS[] = {
    F("scope", K_MSG, 1, 2, &M_SCOPE),
    F("spans", K_REP, 2, 2, &M_SPAN),
    F("schemaUrl", K_STR, 3, 2, NULL),
    F("schema_url", K_STR, 3, 2, NULL),
};
static const Field F_ENTITY[] = {
    F("schemaUrl", K_STR, 1, 2, NULL),
    F("schema_url", K_STR, 1, 2, NULL),
    F("type", K_STR, 2, 2, NULL),
    F("idKeys", K_REPSTR, 3, 2, NULL),
    F("id_keys", K_REPSTR, 3, 2, NULL),
    F("descriptionKeys", K_REPSTR, 4, 2, NULL),
    F("description_keys", K_REPSTR, 4, 2, NULL),
};
static const Field F_RESOURCE[] = {
    F("attributes", K_REP, 1, 2, &M_KV),
    F("droppedAttributesCount", K_U32, 2, 0, NULL),
    F("dropped_attributes_count", K_U32, 2, 0, NULL),
    F("entityRefs", K_REP, 3, 2, &M_ENTITY),
    F("entity_refs", K_REP, 3, 2, &M_ENTITY),
};
static const Field F_RESOURCE_SPANS[] = {
    F("resource", K_MSG, 1, 2, &M_RESOURCE),
    F("scopeSpans", K_REP, 2, 2, &M_SCOPE_SPANS),
    F("scope_spans", K_REP, 2, 2, &M_SCOPE_SPANS),
    F("schemaUrl", K_STR, 3, 2, NULL),
    F("schema_url", K_STR, 3, 2, NULL),
};
static const Field F_TOP[] = {
    F("resourceSpans", K_REP, 1, 2, &M_RESOURCE_SPANS),
    F("resource_spans", K_REP, 1, 2, &M_RESOURCE_SPANS),
};

#define MSG(var, fields, span, any) \
    const Msg var = {fields, (int)(sizeof(fields) / sizeof(fields[0])), span, any}
MSG(M_ANY, F_ANY, 0, 1);
MSG(M_KV, F_KV, 0, 0);
MSG(M_ARRAY, F_ARRAY, 0, 0);
MSG(M_KVLIST, F_KVLIST, 0, 0);
MSG(M_STATUS, F_STATUS, 0, 0);
MSG(M_EVENT, F_EVENT, 0, 0);
MSG(M_LINK, F_LINK, 0, 0);
MSG(M_SPAN, F_SPAN, 1, 0);
MSG(M_SCOPE, F_SCOPE, 0, 0);
MSG(M_SCOPE_SPANS, F_SCOPE_SPANS, 0, 0);
MSG(M_ENTITY, F_ENTITY, 0, 0);
MSG(M_RESOURCE, F_RESOURCE, 0, 0);
MSG(M_RESOURCE_SPANS, F_RESOURCE_SPANS, 0, 0);
MSG(M_TOP, F_TOP, 0, 0);

static int message(Ctx *c, const Msg *m, int depth);

static inline unsigned field_tag(const Field *f) { return f->tag; }

static int put_tag(Out *o, const Field *f) {
    return put_varint(o, field_tag(f));
}

static int hex_id(Ctx *c, const Field *f, int size) {
    In *in = &c->in;
    if (peek(in) != '"') return -1;
    in->p++;
    ptr s = in->p;
    while (in->p < in->end && *in->p != '"') {
        if (hexval(*in->p) < 0) return -1;
        in->p++;
    }
    if (in->p >= in->end) return -1;
    size_t k = (size_t)(in->p - s);
    in->p++;
    if (k == 0) return 0;
    if (k != (size_t)(2 * size)) return -1;
    unsigned char raw[16];
    for (int i = 0; i < size; i++) raw[i] = (unsigned char)(hexval(s[2 * i]) << 4 | hexval(s[2 * i + 1]));
    Out *o = &c->out;
    if (put_tag(o, f) < 0 || put_varint(o, (uint64_t)size) < 0 || put(o, raw, (size_t)size) < 0)
        return -1;
    return 0;
}

static int enum_value(Ctx *c, const char *const *names, int n_names, uint64_t *v) {
    In *in = &c->in;
    if (peek(in) == '"') {
        for (int i = 0; i < n_names; i++) {
            size_t k = strlen(names[i]);
            if ((size_t)(in->end - in->p) >= k + 2 && in->p[k + 1] == '"' &&
                memcmp(in->p + 1, names[i], k) == 0) {
                in->p += k + 2;
                *v = (uint64_t)i;
                return 0;
            }
        }
    }
    return integer(in, 1, INT32_MIN, INT32_MAX, v);
}

static const char *const KIND_NAMES[] = {
    "SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",      "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER",
};
static const char *const CODE_NAMES[] = {"STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"};

static int b64val(unsigned char ch) {
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+' || ch == '-') return 62;
    if (ch == '/' || ch == '_') return 63;
    return -1;
}

/* base64 (either alphabet, padding optional) into a bytes field */
static int b64_field(Ctx *c, const Field *f) {
    In *in = &c->in;
    if (peek(in) != '"') return -1;
    in->p++;
    ptr s = in->p;
    while (in->p < in->end && *in->p != '"') in->p++;
    if (in->p >= in->end) return -1;
    ptr e = in->p;
    in->p++;
    while (e > s && e[-1] == '=') e--;
    if (in->p - 1 - e > 2) return -1;
    size_t k = (size_t)(e - s);
    if (k % 4 == 1) return -1;
    Out *o = &c->out;
    if (put_tag(o, f) < 0 || put_varint(o, (uint64_t)(k / 4 * 3 + (k % 4 ? k % 4 - 1 : 0))) < 0)
        return -1;
    uint32_t acc = 0;
    int bits = 0;
    for (ptr p = s; p < e; p++) {
        int v = b64val(*p);
        if (v < 0) return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            unsigned char byte = (unsigned char)(acc >> bits);
            if (put(o, &byte, 1) < 0) return -1;
        }
    }
    /* the leftover bits must be zero, as a strict decoder wants */
    if (bits && (acc & ((1u << bits) - 1))) return -1;
    return 0;
}

static int value(Ctx *c, const Field *f, int depth) {
    In *in = &c->in;
    Out *o = &c->out;
    uint64_t v;
    switch (f->kind) {
    case K_STR:
    case K_OSTR: {
        if (peek(in) != '"') return -1;
        size_t start = o->n;
        long mark = open_len(o, field_tag(f));
        if (mark < 0 || string(in, o) < 0) return -1;
        if (f->kind == K_STR && o->n == (size_t)mark + 5) {
            o->n = start; /* empty: left out */
            return 0;
        }
        close_len(o, mark);
        return 0;
    }
    case K_ID16:
        return hex_id(c, f, 16);
    case K_ID8:
        return hex_id(c, f, 8);
    case K_U32:
        if (integer(in, 0, 0, UINT32_MAX, &v) < 0) return -1;
        if (v == 0) return 0;
        return put_tag(o, f) < 0 || put_varint(o, v) < 0 ? -1 : 0;
    case K_KIND:
    case K_CODE:
        if (f->kind == K_KIND ? enum_value(c, KIND_NAMES, 6, &v) : enum_value(c, CODE_NAMES, 3, &v))
            return -1;
        if (v == 0) return 0;
        return put_tag(o, f) < 0 || put_varint(o, v) < 0 ? -1 : 0;
    case K_FIXED64:
        if (integer(in, 0, 0, UINT64_MAX, &v) < 0) return -1;
        if (v == 0) return 0;
        return put_tag(o, f) < 0 || put_fixed64(o, v) < 0 ? -1 : 0;
    case K_FIXED32:
        if (integer(in, 0, 0, UINT32_MAX, &v) < 0) return -1;
        if (v == 0) return 0;
        return put_tag(o, f) < 0 || put_fixed32(o, (uint32_t)v) < 0 ? -1 : 0;
    case K_MSG:
    case K_OMSG: {
        if (peek(in) != '{') return -1;
        long mark = open_len(o, field_tag(f));
        if (mark < 0 || message(c, f->sub, depth + 1) < 0) return -1;
        close_len(o, mark);
        return 0;
    }
    case K_REP:
        if (!eat(in, '[')) return -1;
        if (eat(in, ']')) return 0;
        for (;;) {
            if (peek(in) != '{') return -1;
            long mark = open_len(o, field_tag(f));
            if (mark < 0 || message(c, f->sub, depth + 1) < 0) return -1;
            close_len(o, mark);
            if (eat(in, ',')) continue;
            return eat(in, ']') ? 0 : -1;
        }
    case K_REPSTR:
        if (!eat(in, '[')) return -1;
        if (eat(in, ']')) return 0;
        for (;;) {
            if (peek(in) != '"') return -1;
            long mark = open_len(o, field_tag(f));
            if (mark < 0 || string(in, o) < 0) return -1;
            close_len(o, mark);
            if (eat(in, ',')) continue;
            return eat(in, ']') ? 0 : -1;
        }
    case K_OBOOL: {
        int ch = peek(in);
        unsigned char b;
        if (ch == 't' && literal(in, "true") == 0)
            b = 1;
        else if (ch == 'f' && literal(in, "false") == 0)
            b = 0;
        else
            return -1;
        return put_tag(o, f) < 0 || put(o, &b, 1) < 0 ? -1 : 0;
    }
    case K_OI64:
        if (integer(in, 1, INT64_MIN, INT64_MAX, &v) < 0) return -1;
        return put_tag(o, f) < 0 || put_varint(o, v) < 0 ? -1 : 0;
    case K_OI32:
        if (integer(in, 1, INT32_MIN, INT32_MAX, &v) < 0) return -1;
        return put_tag(o, f) < 0 || put_varint(o, v) < 0 ? -1 : 0;
    case K_ODBL: {
        double d;
        if (dbl(in, &d) < 0) return -1;
        uint64_t bits;
        memcpy(&bits, &d, 8);
        return put_tag(o, f) < 0 || put_fixed64(o, bits) < 0 ? -1 : 0;
    }
    case K_OBYTES:
        return b64_field(c, f);
    }
    return -1;
}

/* A key, compared with the message's field names (no escapes: a key with one is left to
 * the Python path). NULL with *unknown set: a key the message does not have. */
static const Field *key(Ctx *c, const Msg *m, int *unknown) {
    In *in = &c->in;
    *unknown = 0;
    if (peek(in) != '"') return NULL;
    ptr s = ++in->p;
    while (in->p < in->end && *in->p != '"' && *in->p != '\\' && *in->p >= 0x20 && *in->p < 0x80)
        in->p++;
    if (in->p >= in->end || *in->p != '"') return NULL;
    size_t k = (size_t)(in->p - s);
    in->p++;
    if (!eat(in, ':')) return NULL;
    for (int i = 0; i < m->n; i++) {
        const Field *f = &m->fields[i];
        if (f->len == k && memcmp(f->name, s, k) == 0) return f;
    }
    *unknown = 1;
    return NULL;
}

static int message(Ctx *c, const Msg *m, int depth) {
    In *in = &c->in;
    if (depth > MAX_DEPTH) return -1;
    if (!eat(in, '{')) return -1;
    if (m->is_span) c->spans++;
    if (eat(in, '}')) return 0;
    uint32_t seen = 0; /* by field number: a repeated key is left to the Python path */
    int oneof = 0;
    for (;;) {
        int unknown;
        const Field *f = key(c, m, &unknown);
        if (f == NULL) {
            if (!unknown || skip(in, depth + 1) < 0) return -1;
        } else {
            uint32_t bit = 1u << f->number;
            if (seen & bit) return -1;
            seen |= bit;
            if (peek(in) == 'n') return -1; /* null */
            if (m->is_any && ++oneof > 1) return -1;
            if (value(c, f, depth) < 0) return -1;
        }
        if (eat(in, ',')) continue;
        return eat(in, '}') ? 0 : -1;
    }
}

static PyObject *jw_decode(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    Ctx c;
    c.in.p = (ptr)view.buf;
    c.in.end = c.in.p + view.len;
    c.out.b = NULL;
    c.out.n = c.out.cap = 0;
    c.out.nomem = 0;
    c.spans = 0;
    int rc = message(&c, &M_TOP, 0);
    if (rc == 0) {
        ws(&c.in);
        if (c.in.p != c.in.end) rc = -1;
    }
    PyBuffer_Release(&view);
    PyObject *result = NULL;
    if (c.out.nomem) {
        PyErr_NoMemory();
    } else if (rc < 0) {
        result = Py_NewRef(Py_None);
    } else {
        PyObject *bytes = PyBytes_FromStringAndSize((const char *)c.out.b, (Py_ssize_t)c.out.n);
        if (bytes != NULL) {
            result = Py_BuildValue("(Nl)", bytes, c.spans);
        }
    }
    PyMem_Free(c.out.b);
    return result;
}

static PyMethodDef methods[] = {
    {"decode", jw_decode, METH_O, "OTLP JSON to protobuf wire bytes; None: take the Python path."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_jsonwire", NULL, -1, methods};

PyMODINIT_FUNC PyInit__jsonwire(void) { return PyModule_Create(&module); }
