/*
 * openapi.h - the server's OpenAPI 3 document.
 */
#ifndef FACENET_SERVER_OPENAPI_H
#define FACENET_SERVER_OPENAPI_H

/* Static JSON text; not freed. */
const char *fn_openapi_json(void);

#endif
