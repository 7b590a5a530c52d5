/* Reading JSON test data (goldens kept as JSON under tests/data). */
#ifndef KILN_TEST_JSON_DATA_H
#define KILN_TEST_JSON_DATA_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

/* Parses tests/data/<relative>; fails the test if it cannot. Free with cJSON_Delete. */
cJSON *json_data_load(const char *relative);

/* The member `key` of `obj`; fails the test if it is absent. */
const cJSON *json_data_get(const cJSON *obj, const char *key);

/* A string member; fails the test if absent or not a string. */
const char *json_data_string(const cJSON *obj, const char *key);

/* An array of integers, malloc'd (the caller frees it); fails the test if
 * `key` is not an array of numbers. */
int32_t *json_data_ints(const cJSON *obj, const char *key, size_t *count);

#endif
