/* kiln-shapes, the small SD 1.x model trained by tools/train, embedded in the
 * library so `gen` makes a picture on a machine with no checkpoint at all.
 * CMakeLists.txt passes its path as KILN_DEFAULT_MODEL_FILE when
 * models/kiln-shapes.safetensors exists. */
#include "embed.h"
#include "model.h"
#include "status.h"

#ifdef KILN_DEFAULT_MODEL_FILE
KILN_EMBED_FILE(kiln_default_model, KILN_DEFAULT_MODEL_FILE);
extern const unsigned char kiln_default_model[], kiln_default_model_end[];

kiln_status kiln_default_checkpoint_open(kiln_checkpoint **out)
{
    return kiln_checkpoint_open_memory(kiln_default_model, (size_t)(kiln_default_model_end - kiln_default_model),
                                       "kiln-shapes (embedded)", out);
}
#else
kiln_status kiln_default_checkpoint_open(kiln_checkpoint **out)
{
    *out = NULL;
    return kiln_fail(KILN_ERR_UNSUPPORTED, "this kiln was built without the embedded default model "
                                           "(models/kiln-shapes.safetensors was missing): pass --model");
}
#endif

kiln_status kiln_model_load_default(kiln_backend *be, kiln_model **out)
{
    kiln_checkpoint *ck;
    TRY(kiln_default_checkpoint_open(&ck));
    return kiln_model_load_checkpoint(ck, be, out);
}
