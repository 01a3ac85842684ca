/*
 * manifest.h - the pinned model table, generated at build time from
 * models/manifest.json (see cmake/manifest_to_c.cmake).
 */
#ifndef FACENET_MODELS_MANIFEST_H
#define FACENET_MODELS_MANIFEST_H

#include <stddef.h>

#include "facenet/facenet.h"

extern const facenet_model_info fn_manifest_models[];
extern const size_t fn_manifest_count;

#endif
