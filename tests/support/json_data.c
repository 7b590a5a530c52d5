#include "json_data.h"

#include <stdio.h>
#include <stdlib.h>

#include "kiln_test.h"

cJSON *json_data_load(const char *relative)
{
    const char *path = kiln_test_data(relative);
    char *text = (char *)kiln_test_read_file(path, NULL);
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) fail_msg("%s: not valid JSON", path);
    return root;
}

const cJSON *json_data_get(const cJSON *obj, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!item) fail_msg("JSON test data: no member '%s'", key);
    return item;
}

const char *json_data_string(const cJSON *obj, const char *key)
{
    const cJSON *item = json_data_get(obj, key);
    if (!cJSON_IsString(item)) fail_msg("JSON test data: '%s' is not a string", key);
    return item->valuestring;
}

int32_t *json_data_ints(const cJSON *obj, const char *key, size_t *count)
{
    const cJSON *arr = json_data_get(obj, key);
    if (!cJSON_IsArray(arr)) fail_msg("JSON test data: '%s' is not an array", key);
    size_t n = (size_t)cJSON_GetArraySize(arr);
    int32_t *out = malloc((n ? n : 1) * sizeof *out);
    assert_non_null(out);
    size_t i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, arr)
    {
        if (!cJSON_IsNumber(v)) fail_msg("JSON test data: '%s'[%zu] is not a number", key, i);
        out[i++] = (int32_t)v->valuedouble;
    }
    *count = n;
    return out;
}
