/*
 * json.h
 *	  The request-body scanner of ventros-http.
 */
#ifndef VN_HTTP_JSON_H
#define VN_HTTP_JSON_H

#include <stdbool.h>
#include <stddef.h>

/* top-level keys of a JSON object or array of objects; false when malformed */
extern bool vn_json_scan(const char *s, size_t len, char ***keys, int *nkeys, bool *is_array, const char **error);
/* the same, and whether every object of an array names the same keys (PostgREST's "All object keys must match") */
extern bool vn_json_scan_uniform(const char *s, size_t len, char ***keys, int *nkeys, bool *is_array, bool *uniform,
								 const char **error);

/*
 * The top-level keys of one JSON object, decoded exactly (escapes
 * included); false when the text is not one object or a key appears twice.
 */
extern bool vn_json_object_keys(const char *s, size_t len, char ***keys, int *nkeys);

#endif
