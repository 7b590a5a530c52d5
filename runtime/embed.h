/* Linking a data file into libkiln byte for byte (ELF targets), so the
 * library needs no files at run time. KILN_EMBED_FILE(sym, "path") defines
 * the hidden symbols sym and sym##_end around the file's bytes; declare them
 * as `extern const unsigned char sym[], sym##_end[];` where they are used. */
#ifndef KILN_EMBED_H
#define KILN_EMBED_H

#define KILN_EMBED_FILE(sym, path)                \
    __asm__(".pushsection .rodata\n"              \
            ".balign 64\n"                        \
            ".globl " #sym "\n"                   \
            ".hidden " #sym "\n"                  \
            ".type " #sym ", @object\n" #sym ":\n" \
            ".incbin \"" path "\"\n"              \
            ".globl " #sym "_end\n"               \
            ".hidden " #sym "_end\n" #sym "_end:\n" \
            ".popsection\n")

#endif
