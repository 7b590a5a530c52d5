/* Stand-in for the CUDA header of this name: see ../README.md. */
#include "emu.h"
