#!/usr/bin/env python3
"""Rewrites a kernels/*.cu file into C++ that g++ compiles against the emulator (include/emu.h).

Two CUDA-only constructs are rewritten:
  kernel<<<grid, block[, smem[, stream]]>>>(args);  ->  emu_launch([&] { kernel(args); }, grid, block, ...);
  extern __shared__ [__align__(n)] T name[];        ->  T *name = (T *)emu_dyn_smem;
A launch's argument list must end at the statement's first ");" (true of every launch in kernels/).
Usage: preprocess.py IN.cu OUT.cpp
"""
import re
import sys

LAUNCH = re.compile(r'([A-Za-z_]\w*(?:<[^<>;]*>)?)<<<(.*?)>>>\((.*?)\);', re.S)
DYNAMIC_SHARED = re.compile(r'extern __shared__ (?:__align__\(\d+\) )?([\w ]+?) (\w+)\[\];')

src = open(sys.argv[1]).read()
src, launches = LAUNCH.subn(lambda m: 'emu_launch([&] { %s(%s); }, %s);' % (m.group(1), m.group(3), m.group(2)), src)
src = DYNAMIC_SHARED.sub(r'\1 *\2 = (\1 *)emu_dyn_smem;', src)
if '<<<' in src:
    sys.exit(f'{sys.argv[1]}: a kernel launch was not rewritten')
open(sys.argv[2], 'w').write(src)
