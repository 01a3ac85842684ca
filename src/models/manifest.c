#include "models/manifest.h"

#include <string.h>

size_t facenet_model_count(void)
{
    return fn_manifest_count;
}

const facenet_model_info *facenet_model_at(size_t index)
{
    return index < fn_manifest_count ? &fn_manifest_models[index] : NULL;
}

const facenet_model_info *facenet_model_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < fn_manifest_count; i++)
        if (strcmp(fn_manifest_models[i].name, name) == 0)
            return &fn_manifest_models[i];
    return NULL;
}
