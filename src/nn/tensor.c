#include "nn/tensor.h"

#include <stdio.h>
#include <string.h>

nn_shape nn_shape1(int d0)
{
    nn_shape s;
    memset(&s, 0, sizeof s);
    s.rank = 1;
    s.dims[0] = d0;
    return s;
}

nn_shape nn_shape2(int d0, int d1)
{
    nn_shape s = nn_shape1(d0);
    s.rank = 2;
    s.dims[1] = d1;
    return s;
}

nn_shape nn_shape4(int n, int h, int w, int c)
{
    nn_shape s = nn_shape2(n, h);
    s.rank = 4;
    s.dims[2] = w;
    s.dims[3] = c;
    return s;
}

size_t nn_shape_count(const nn_shape *s)
{
    size_t count = 1;
    if (s->rank < 0 || s->rank > NN_MAX_RANK)
        return 0;
    for (int i = 0; i < s->rank; i++) {
        if (s->dims[i] <= 0)
            return 0;
        count *= (size_t)s->dims[i];
        if (count >= ((size_t)1 << 40))
            return 0;
    }
    return count;
}

int nn_shape_equal(const nn_shape *a, const nn_shape *b)
{
    if (a->rank != b->rank)
        return 0;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i])
            return 0;
    return 1;
}

const char *nn_shape_str(const nn_shape *s, char *buf, size_t size)
{
    size_t used = 0;
    if (size == 0)
        return buf;
    buf[0] = '\0';
    used += (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < s->rank && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ",%d" : "%d",
                                 s->dims[i]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
    return buf;
}
