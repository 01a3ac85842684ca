/*
 * cmd_gallery.c - `facenet gallery keygen|create|list|show|remove|collections|
 * rename-collection|remove-collection|export|import|rekey|stats|check|
 * threshold|bench`: looking after a gallery file.
 */
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_util.h"
#include "cli/gallery_util.h"

static const char gallery_usage[] =
    "usage: facenet gallery COMMAND [OPTIONS]\n"
    "\n"
    "  keygen FILE                   write a new random key (mode 0600)\n"
    "  create G [--model NAME] [--threshold T]\n"
    "                                an empty gallery for one model\n"
    "  list G [--collection C]       subjects and their template counts\n"
    "  show G SUBJECT                one subject's metadata and templates\n"
    "  remove G SUBJECT              delete a subject and its templates, for good\n"
    "  remove G --template ID        delete one template\n"
    "  collections G                 collections with subject and template counts\n"
    "  rename-collection G OLD NEW   rename a collection\n"
    "  remove-collection G NAME      delete a collection, its subjects and\n"
    "                                templates, for good\n"
    "  export G OUT [--plaintext] [--export-key-file K]\n"
    "                                all subjects and embeddings as JSON, sealed\n"
    "                                with the gallery key (or K); --plaintext\n"
    "                                writes biometric data in clear\n"
    "  import G IN [--import-key-file K]\n"
    "                                merge an export (same model) into G\n"
    "  rekey G --new-key-file K      re-encrypt everything under a new key\n"
    "  stats G                       counts, sizes, memory\n"
    "  check G                       integrity check and authentication of\n"
    "                                every row\n"
    "  threshold G [T]               show or set the open-set threshold\n"
    "  bench [--sizes N,N..]         time top-k search on synthetic templates\n"
    "\n"
    "Common options: --key-file K (default: $FACENET_GALLERY_KEY), --json,\n"
    "--collection C (default \"default\"), --model-dir DIR.\n"
    "Keys are never taken on the command line. Exit codes: 0 ok, 1 not found,\n"
    "2 usage, 3 models missing, 4 gallery unreadable (wrong key, damaged,\n"
    "another model), 5 internal error.\n";

int cmd_gallery_bench(int argc, char **argv);

typedef struct gopts {
    const char *key_file, *collection, *model, *model_dir, *new_key_file, *other_key_file;
    int json, plaintext;
    long long template_id;
    float threshold;
    char **pos;
    int n_pos;
} gopts;

/* Parse the options every gallery command shares; positionals go to pos. */
static int parse(int argc, char **argv, gopts *o)
{
    static const struct option longopts[] = {
        {"key-file", required_argument, NULL, 'K'},
        {"collection", required_argument, NULL, 'c'},
        {"model", required_argument, NULL, 'm'},
        {"model-dir", required_argument, NULL, 'D'},
        {"new-key-file", required_argument, NULL, 'N'},
        {"export-key-file", required_argument, NULL, 'E'},
        {"import-key-file", required_argument, NULL, 'I'},
        {"template", required_argument, NULL, 'T'},
        {"threshold", required_argument, NULL, 't'},
        {"plaintext", no_argument, NULL, 'p'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int c;
    memset(o, 0, sizeof *o);
    o->template_id = -1;
    o->threshold = -2;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'K': o->key_file = optarg; break;
        case 'c': o->collection = optarg; break;
        case 'm': o->model = optarg; break;
        case 'D': o->model_dir = optarg; break;
        case 'N': o->new_key_file = optarg; break;
        case 'E':
        case 'I': o->other_key_file = optarg; break;
        case 'p': o->plaintext = 1; break;
        case 'j': o->json = 1; break;
        case 'T':
            o->template_id = strtoll(optarg, &end, 10);
            if (*end || o->template_id < 1) {
                fprintf(stderr, "facenet gallery: --template takes a template id\n");
                return CLI_EXIT_USAGE;
            }
            break;
        case 't':
            if (cli_parse_cosine(optarg, &o->threshold) != 0) {
                fprintf(stderr, "facenet gallery: --threshold is a cosine similarity in [-1, 1]\n");
                return CLI_EXIT_USAGE;
            }
            break;
        case 'h': fputs(gallery_usage, stdout); return -1;
        default: fputs(gallery_usage, stderr); return CLI_EXIT_USAGE;
        }
    }
    o->pos = argv + optind;
    o->n_pos = argc - optind;
    return CLI_EXIT_OK;
}

static int need_pos(const gopts *o, int lo, int hi, const char *cmd)
{
    if (o->n_pos < lo || o->n_pos > hi) {
        fprintf(stderr, "facenet gallery %s: wrong number of arguments (see facenet gallery "
                        "--help)\n",
                cmd);
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

/* ---- keygen, create ------------------------------------------------------------ */

static int do_keygen(const gopts *o)
{
    facenet_error err;
    if (need_pos(o, 1, 1, "keygen"))
        return CLI_EXIT_USAGE;
    if (facenet_gallery_key_generate(o->pos[0], &err) != FACENET_OK)
        return gcli_report(&err);
    printf("wrote a new gallery key to %s (mode 0600); keep a copy somewhere safe: without it "
           "the gallery cannot be read\n",
           o->pos[0]);
    return CLI_EXIT_OK;
}

static int do_create(const gopts *o)
{
    char model_dir[PATH_MAX];
    gcli_pipeline p;
    facenet_gallery *g = NULL;
    facenet_error err;
    if (need_pos(o, 1, 1, "create"))
        return CLI_EXIT_USAGE;
    if (o->model && !facenet_model_find(o->model)) {
        fprintf(stderr, "facenet gallery create: no model named '%s'\n", o->model);
        return CLI_EXIT_USAGE;
    }
    if (cli_model_dir(o->model_dir, model_dir, sizeof model_dir) != 0)
        return CLI_EXIT_MODEL;
    /* The pinned files must be present: the model id is their hash. */
    int rc = gcli_pipeline_open(&p, model_dir, o->model, 0);
    if (rc != CLI_EXIT_OK)
        return rc;
    rc = gcli_open(o->pos[0], o->key_file, p.model_id, p.dim, FACENET_GALLERY_CREATE, &g);
    gcli_pipeline_close(&p);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (o->threshold >= -1 && facenet_gallery_set_threshold(g, o->threshold, &err) != FACENET_OK)
        rc = gcli_report(&err);
    if (rc == CLI_EXIT_OK)
        printf("gallery %s: model %s, %d-D, threshold %.4f, %zu templates\n", o->pos[0],
               facenet_gallery_model(g), facenet_gallery_dim(g), facenet_gallery_threshold(g),
               facenet_gallery_size(g));
    facenet_gallery_close(g);
    return rc;
}

/* ---- list, show ------------------------------------------------------------------ */

typedef struct list_out {
    json_t *array;
    size_t n;
} list_out;

static int print_subject(void *arg, const facenet_gallery_subject *s)
{
    list_out *out = arg;
    out->n++;
    if (out->array) {
        json_t *meta = s->metadata_json ? json_loads(s->metadata_json, 0, NULL) : NULL;
        json_array_append_new(out->array,
                              json_pack("{s:I,s:s,s:s,s:o*,s:s,s:I}", "id", (json_int_t)s->id,
                                        "collection", s->collection, "name", s->name, "metadata",
                                        meta, "created_at", s->created_at, "templates",
                                        (json_int_t)s->n_templates));
    } else {
        printf("%6lld  %-12s %-40s %4zu template%s  %s\n", (long long)s->id, s->collection,
               s->name, s->n_templates, s->n_templates == 1 ? " " : "s", s->created_at);
    }
    return 0;
}

static void print_json(json_t *doc)
{
    json_dumpf(doc, stdout, JSON_INDENT(2));
    fputc('\n', stdout);
    json_decref(doc);
}

static int do_list(const gopts *o)
{
    facenet_gallery *g;
    facenet_error err;
    list_out out = {o->json ? json_array() : NULL, 0};
    if (need_pos(o, 1, 1, "list"))
        return CLI_EXIT_USAGE;
    int rc = gcli_open(o->pos[0], o->key_file, NULL, 0, FACENET_GALLERY_READ_ONLY, &g);
    if (rc != CLI_EXIT_OK) {
        json_decref(out.array);
        return rc;
    }
    if (!o->json)
        printf("%6s  %-12s %-40s %s\n", "id", "collection", "subject", "templates");
    if (facenet_gallery_list(g, o->collection, print_subject, &out, &err) != FACENET_OK)
        rc = gcli_report(&err);
    if (o->json)
        print_json(json_pack("{s:s,s:s,s:o}", "gallery", o->pos[0], "model",
                             facenet_gallery_model(g), "subjects", out.array));
    else if (rc == CLI_EXIT_OK)
        printf("%zu subject%s\n", out.n, out.n == 1 ? "" : "s");
    facenet_gallery_close(g);
    return rc;
}

typedef struct show_ctx {
    const char *name;
    json_t *subject;
} show_ctx;

static int find_subject(void *arg, const facenet_gallery_subject *s)
{
    show_ctx *c = arg;
    if (strcmp(s->name, c->name) != 0)
        return 0;
    json_t *meta = s->metadata_json ? json_loads(s->metadata_json, 0, NULL) : NULL;
    c->subject = json_pack("{s:I,s:s,s:s,s:o*,s:s}", "id", (json_int_t)s->id, "collection",
                           s->collection, "name", s->name, "metadata", meta, "created_at",
                           s->created_at);
    return 1;
}

static int add_template(void *arg, const facenet_gallery_template *t)
{
    json_array_append_new(arg, json_pack("{s:I,s:s,s:s,s:s,s:s}", "id", (json_int_t)t->id,
                                         "model_id", t->model_id, "preprocess", t->preprocess,
                                         "image_sha256", t->image_sha256, "created_at",
                                         t->created_at));
    return 0;
}

static int do_show(const gopts *o)
{
    facenet_gallery *g;
    facenet_error err;
    show_ctx c = {NULL, NULL};
    if (need_pos(o, 2, 2, "show"))
        return CLI_EXIT_USAGE;
    c.name = o->pos[1];
    int rc = gcli_open(o->pos[0], o->key_file, NULL, 0, FACENET_GALLERY_READ_ONLY, &g);
    if (rc != CLI_EXIT_OK)
        return rc;
    const char *collection = o->collection ? o->collection : "default";
    json_t *templates = json_array();
    facenet_status st = facenet_gallery_list(g, collection, find_subject, &c, &err);
    if (st == FACENET_OK && !c.subject) {
        st = FACENET_ERR_NOT_FOUND;
        snprintf(err.message, sizeof err.message,
                 "gallery %s has no subject '%s' in collection '%s'", o->pos[0], c.name,
                 collection);
    }
    if (st == FACENET_OK)
        st = facenet_gallery_list_templates(g, collection, c.name, add_template, templates, &err);
    if (st != FACENET_OK) {
        fprintf(stderr, "facenet: %s\n", err.message);
        rc = st == FACENET_ERR_NOT_FOUND ? CLI_EXIT_PROBLEM : gcli_exit_code(st);
    } else if (o->json) {
        json_object_set(c.subject, "templates", templates);
        print_json(json_incref(c.subject));
    } else {
        json_t *meta = json_object_get(c.subject, "metadata");
        char *meta_text = meta ? json_dumps(meta, JSON_COMPACT) : NULL;
        printf("subject %lld: %s (collection %s), created %s\nmetadata: %s\ntemplates:\n",
               (long long)json_integer_value(json_object_get(c.subject, "id")), c.name, collection,
               json_string_value(json_object_get(c.subject, "created_at")),
               meta_text ? meta_text : "none");
        free(meta_text);
        size_t i;
        json_t *t;
        json_array_foreach(templates, i, t) {
            printf("  %6lld  %s  %s  image sha256 %s\n",
                   (long long)json_integer_value(json_object_get(t, "id")),
                   json_string_value(json_object_get(t, "created_at")),
                   json_string_value(json_object_get(t, "preprocess")),
                   *json_string_value(json_object_get(t, "image_sha256"))
                       ? json_string_value(json_object_get(t, "image_sha256"))
                       : "(unknown)");
        }
    }
    json_decref(templates);
    json_decref(c.subject);
    facenet_gallery_close(g);
    return rc;
}

/* ---- remove ------------------------------------------------------------------------ */

static int do_remove(const gopts *o)
{
    facenet_gallery *g;
    facenet_error err;
    facenet_status st;
    size_t n = 0;
    if (need_pos(o, o->template_id > 0 ? 1 : 2, o->template_id > 0 ? 1 : 2, "remove"))
        return CLI_EXIT_USAGE;
    int rc = gcli_open(o->pos[0], o->key_file, NULL, 0, 0, &g);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (o->template_id > 0) {
        st = facenet_gallery_remove_template(g, (int64_t)o->template_id, &err);
        n = 1;
    } else {
        st = facenet_gallery_remove_subject(g, o->collection, o->pos[1], &n, &err);
    }
    if (st != FACENET_OK) {
        fprintf(stderr, "facenet: %s\n", err.message);
        rc = st == FACENET_ERR_NOT_FOUND ? CLI_EXIT_PROBLEM : gcli_exit_code(st);
    } else if (o->template_id > 0) {
        printf("removed template %lld from %s\n", o->template_id, o->pos[0]);
    } else {
        printf("removed subject '%s' and %zu template%s from %s\n", o->pos[1], n,
               n == 1 ? "" : "s", o->pos[0]);
    }
    facenet_gallery_close(g);
    return rc;
}

/* ---- collections ---------------------------------------------------------------------- */

typedef struct collections_out {
    json_t *array;
    size_t n;
} collections_out;

static int print_collection(void *arg, const facenet_gallery_collection *c)
{
    collections_out *out = arg;
    out->n++;
    if (out->array)
        json_array_append_new(out->array,
                              json_pack("{s:I,s:s,s:s,s:I,s:I}", "id", (json_int_t)c->id, "name",
                                        c->name, "created_at", c->created_at, "subjects",
                                        (json_int_t)c->n_subjects, "templates",
                                        (json_int_t)c->n_templates));
    else
        printf("%6lld  %-30s %8zu %9zu  %s\n", (long long)c->id, c->name, c->n_subjects,
               c->n_templates, c->created_at);
    return 0;
}

static int do_collections(const gopts *o)
{
    facenet_gallery *g;
    facenet_error err;
    collections_out out = {NULL, 0};
    if (need_pos(o, 1, 1, "collections"))
        return CLI_EXIT_USAGE;
    int rc = gcli_open(o->pos[0], o->key_file, NULL, 0, FACENET_GALLERY_READ_ONLY, &g);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (o->json)
        out.array = json_array();
    else
        printf("%6s  %-30s %8s %9s  %s\n", "id", "collection", "subjects", "templates",
               "created");
    if (facenet_gallery_list_collections(g, print_collection, &out, &err) != FACENET_OK)
        rc = gcli_report(&err);
    if (o->json && rc == CLI_EXIT_OK)
        print_json(json_pack("{s:s,s:O}", "gallery", o->pos[0], "collections", out.array));
    else if (rc == CLI_EXIT_OK)
        printf("%zu collection%s\n", out.n, out.n == 1 ? "" : "s");
    json_decref(out.array);
    facenet_gallery_close(g);
    return rc;
}

/* A missing name is "not found" (1), like a missing subject. */
static int report_change(facenet_status st, const facenet_error *err)
{
    if (st == FACENET_ERR_NOT_FOUND) {
        fprintf(stderr, "facenet: %s\n", err->message);
        return CLI_EXIT_PROBLEM;
    }
    return gcli_report(err);
}

static int do_rename_collection(const gopts *o)
{
    facenet_gallery *g;
    facenet_error err;
    if (need_pos(o, 3, 3, "rename-collection"))
        return CLI_EXIT_USAGE;
    int rc = gcli_open(o->pos[0], o->key_file, NULL, 0, 0, &g);
    if (rc != CLI_EXIT_OK)
        return rc;
    facenet_status st = facenet_gallery_rename_collection(g, o->pos[1], o->pos[2], &err);
    if (st != FACENET_OK)
        rc = report_change(st, &err);
    else
        printf("renamed collection '%s' to '%s' in %s\n", o->pos[1], o->pos[2], o->pos[0]);
    facenet_gallery_close(g);
    return rc;
}

static int do_remove_collection(const gopts *o)
{
    facenet_gallery *g;
    facenet_error err;
    size_t subjects = 0, templates = 0;
    if (need_pos(o, 2, 2, "remove-collection"))
        return CLI_EXIT_USAGE;
    int rc = gcli_open(o->pos[0], o->key_file, NULL, 0, 0, &g);
    if (rc != CLI_EXIT_OK)
        return rc;
    facenet_status st =
        facenet_gallery_remove_collection(g, o->pos[1], &subjects, &templates, &err);
    if (st != FACENET_OK)
        rc = report_change(st, &err);
    else
        printf("removed collection '%s' with %zu subject%s and %zu template%s from %s\n",
               o->pos[1], subjects, subjects == 1 ? "" : "s", templates,
               templates == 1 ? "" : "s", o->pos[0]);
    facenet_gallery_close(g);
    return rc;
}

/* ---- export, import, rekey ------------------------------------------------------------ */

/* The second key of export/import/rekey: a key file only (the environment
 * holds the gallery's own key). */
static int other_key(const char *file, uint8_t key[FACENET_GALLERY_KEY_BYTES])
{
    facenet_error err;
    if (facenet_gallery_key_load(file, key, &err) != FACENET_OK) {
        fprintf(stderr, "facenet: %s\n", err.message);
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

static int do_export(const gopts *o)
{
    facenet_gallery *g;
    facenet_error err;
    uint8_t key[FACENET_GALLERY_KEY_BYTES];
    const uint8_t *export_key = NULL;
    if (need_pos(o, 2, 2, "export"))
        return CLI_EXIT_USAGE;
    if (o->plaintext && o->other_key_file) {
        fprintf(stderr, "facenet gallery export: --plaintext and --export-key-file exclude each "
                        "other\n");
        return CLI_EXIT_USAGE;
    }
    int rc = gcli_open(o->pos[0], o->key_file, NULL, 0, FACENET_GALLERY_READ_ONLY, &g);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (!o->plaintext) {
        /* Sealed with the export key, or with the gallery's own key. */
        rc = o->other_key_file ? other_key(o->other_key_file, key)
                               : other_key(o->key_file, key);
        export_key = key;
    }
    if (rc == CLI_EXIT_OK && facenet_gallery_export(g, o->pos[1], export_key, &err) != FACENET_OK)
        rc = gcli_report(&err);
    if (rc == CLI_EXIT_OK)
        printf("exported %zu templates from %s to %s (%s)\n", facenet_gallery_size(g), o->pos[0],
               o->pos[1], export_key ? "sealed" : "PLAINTEXT: biometric data in clear");
    sodium_memzero(key, sizeof key);
    facenet_gallery_close(g);
    return rc;
}

static int do_import(const gopts *o)
{
    facenet_gallery *g;
    facenet_error err;
    uint8_t key[FACENET_GALLERY_KEY_BYTES];
    size_t added = 0;
    if (need_pos(o, 2, 2, "import"))
        return CLI_EXIT_USAGE;
    int rc = gcli_open(o->pos[0], o->key_file, NULL, 0, 0, &g);
    if (rc != CLI_EXIT_OK)
        return rc;
    rc = o->other_key_file ? other_key(o->other_key_file, key) : other_key(o->key_file, key);
    if (rc == CLI_EXIT_OK &&
        facenet_gallery_import(g, o->pos[1], key, &added, &err) != FACENET_OK)
        rc = gcli_report(&err);
    if (rc == CLI_EXIT_OK)
        printf("imported %zu new templates into %s (now %zu)\n", added, o->pos[0],
               facenet_gallery_size(g));
    sodium_memzero(key, sizeof key);
    facenet_gallery_close(g);
    return rc;
}

static int do_rekey(const gopts *o)
{
    facenet_gallery *g;
    facenet_error err;
    uint8_t key[FACENET_GALLERY_KEY_BYTES];
    if (need_pos(o, 1, 1, "rekey"))
        return CLI_EXIT_USAGE;
    if (!o->new_key_file) {
        fprintf(stderr, "facenet gallery rekey: --new-key-file is required (make one with "
                        "'facenet gallery keygen')\n");
        return CLI_EXIT_USAGE;
    }
    int rc = other_key(o->new_key_file, key);
    if (rc != CLI_EXIT_OK)
        return rc;
    rc = gcli_open(o->pos[0], o->key_file, NULL, 0, 0, &g);
    if (rc == CLI_EXIT_OK) {
        if (facenet_gallery_rekey(g, key, &err) != FACENET_OK)
            rc = gcli_report(&err);
        else
            printf("re-encrypted %zu templates of %s under the new key; the old key no longer "
                   "opens it\n",
                   facenet_gallery_size(g), o->pos[0]);
        facenet_gallery_close(g);
    }
    sodium_memzero(key, sizeof key);
    return rc;
}

/* ---- stats, check, threshold ---------------------------------------------------------- */

static int do_stats(const gopts *o)
{
    facenet_gallery *g;
    facenet_error err;
    facenet_gallery_stats st;
    if (need_pos(o, 1, 1, "stats"))
        return CLI_EXIT_USAGE;
    int rc = gcli_open(o->pos[0], o->key_file, NULL, 0, FACENET_GALLERY_READ_ONLY, &g);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (facenet_gallery_stats_get(g, &st, &err) != FACENET_OK) {
        rc = gcli_report(&err);
    } else if (o->json) {
        print_json(json_pack("{s:s,s:s,s:i,s:o,s:i,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
                             "gallery", o->pos[0], "model", st.model_id, "dim", st.dim,
                             "threshold", isnan(st.threshold) ? json_null() : json_real(st.threshold),
                             "schema_version", st.schema_version,
                             "collections", (json_int_t)st.collections, "subjects",
                             (json_int_t)st.subjects, "templates", (json_int_t)st.templates,
                             "file_bytes", (json_int_t)st.file_bytes, "wal_bytes",
                             (json_int_t)st.wal_bytes, "page_size", (json_int_t)st.page_size,
                             "page_count", (json_int_t)st.page_count, "free_pages",
                             (json_int_t)st.free_pages, "memory_bytes",
                             (json_int_t)st.memory_bytes));
    } else {
        printf("gallery:      %s\nmodel:        %s (%d-D)\nthreshold:    %.4f (cosine; nan: "
               "not set)\n"
               "schema:       version %d\ncollections:  %zu\nsubjects:     %zu\n"
               "templates:    %zu\nfile:         %lld bytes (+ %lld in the log), %lld pages "
               "of %lld, %lld free\nmemory:       %.3f MiB for the decrypted matrix\n",
               o->pos[0], st.model_id, st.dim, st.threshold, st.schema_version, st.collections,
               st.subjects, st.templates, (long long)st.file_bytes, (long long)st.wal_bytes,
               (long long)st.page_count, (long long)st.page_size, (long long)st.free_pages,
               (double)st.memory_bytes / (1 << 20));
    }
    facenet_gallery_close(g);
    return rc;
}

static int do_check(const gopts *o)
{
    facenet_gallery *g;
    facenet_error err;
    if (need_pos(o, 1, 1, "check"))
        return CLI_EXIT_USAGE;
    int rc = gcli_open(o->pos[0], o->key_file, NULL, 0, FACENET_GALLERY_READ_ONLY, &g);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (facenet_gallery_check(g, &err) != FACENET_OK)
        rc = gcli_report(&err);
    else
        printf("%s: ok (%zu templates authenticated, integrity check passed)\n", o->pos[0],
               facenet_gallery_size(g));
    facenet_gallery_close(g);
    return rc;
}

static int do_threshold(const gopts *o)
{
    facenet_gallery *g;
    facenet_error err;
    float t = 0;
    if (need_pos(o, 1, 2, "threshold"))
        return CLI_EXIT_USAGE;
    if (o->n_pos == 2) {
        if (cli_parse_cosine(o->pos[1], &t) != 0) {
            fprintf(stderr, "facenet gallery threshold: a cosine similarity in [-1, 1]\n");
            return CLI_EXIT_USAGE;
        }
    }
    int rc = gcli_open(o->pos[0], o->key_file, NULL, 0,
                       o->n_pos == 2 ? 0 : FACENET_GALLERY_READ_ONLY, &g);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (o->n_pos == 2 && facenet_gallery_set_threshold(g, t, &err) != FACENET_OK)
        rc = gcli_report(&err);
    if (rc == CLI_EXIT_OK)
        printf("%.4f\n", facenet_gallery_threshold(g));
    facenet_gallery_close(g);
    return rc;
}

int cmd_gallery(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(const gopts *o);
    } commands[] = {{"keygen", do_keygen}, {"create", do_create}, {"list", do_list},
                    {"show", do_show},     {"remove", do_remove}, {"export", do_export},
                    {"import", do_import}, {"rekey", do_rekey},   {"stats", do_stats},
                    {"check", do_check},   {"threshold", do_threshold},
                    {"collections", do_collections},
                    {"rename-collection", do_rename_collection},
                    {"remove-collection", do_remove_collection}};
    gopts o;

    if (argc < 2) {
        fputs(gallery_usage, stderr);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(gallery_usage, stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "bench") == 0)
        return cmd_gallery_bench(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) != 0)
            continue;
        int rc = parse(argc - 1, argv + 1, &o);
        if (rc == -1)
            return CLI_EXIT_OK; /* --help */
        if (rc != CLI_EXIT_OK)
            return rc;
        return commands[i].run(&o);
    }
    fprintf(stderr, "facenet gallery: unknown command '%s'\n", argv[1]);
    fputs(gallery_usage, stderr);
    return CLI_EXIT_USAGE;
}
