// voxelbone — standalone driver of one host-grid launch (the ThreadSanitizer build).
// Appended to a kernel file's grid build to make an executable, so the sanitizer runtime
// starts with the process instead of being loaded into Python:
//   driver SPEC OUT   reads the launch (kernel, grid, block, order, buffers, arguments)
//                     from SPEC, runs it, writes every buffer back to OUT in order.
// voxelbone/kernels.py (host_grid_launch) writes SPEC and reads OUT.
#pragma once
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

extern "C" int vbhost_launch(const char* name, const vbh::Config* c, void** argv, char* err, size_t errlen);

static void vbh_read(FILE* f, void* p, size_t n) {
    if (n && fread(p, 1, n, f) != n) vbh::fatal("truncated launch spec");
}

int main(int argc, char** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s SPEC OUT\n", argv[0]);
        return 2;
    }
    FILE* f = fopen(argv[1], "rb");
    if (!f) vbh::fatal("cannot open the launch spec");
    char magic[4];
    vbh_read(f, magic, 4);
    if (memcmp(magic, "VBH1", 4) != 0) vbh::fatal("not a launch spec");
    unsigned name_len;
    vbh_read(f, &name_len, 4);
    std::string name(name_len, '\0');
    vbh_read(f, &name[0], name_len);
    vbh::Config c;
    vbh_read(f, &c, sizeof c);
    unsigned nbuf;
    vbh_read(f, &nbuf, 4);
    std::vector<std::vector<unsigned char>> bufs(nbuf);
    for (auto& b : bufs) {
        unsigned long long n;
        vbh_read(f, &n, 8);
        b.resize(n + 16);  // never empty, so .data() is a real pointer
        vbh_read(f, b.data(), n);
        b.resize(n);
    }
    unsigned nargs;
    vbh_read(f, &nargs, 4);
    std::vector<std::vector<unsigned char>> scalars(nargs);
    std::vector<void*> pointers(nargs);
    std::vector<void*> args(nargs);
    for (unsigned i = 0; i < nargs; ++i) {
        unsigned char kind;
        vbh_read(f, &kind, 1);
        unsigned v;
        vbh_read(f, &v, 4);
        if (kind == 0) {
            if (v >= nbuf) vbh::fatal("bad buffer index in launch spec");
            pointers[i] = bufs[v].data();
            args[i] = &pointers[i];
        } else {
            scalars[i].resize(v < 8 ? 8 : v);
            vbh_read(f, scalars[i].data(), v);
            args[i] = scalars[i].data();
        }
    }
    fclose(f);
    char err[512] = {0};
    const int rc = vbhost_launch(name.c_str(), &c, args.data(), err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "voxelbone host grid: %s\n", err);
        return 3;
    }
    FILE* o = fopen(argv[2], "wb");
    if (!o) vbh::fatal("cannot write the output");
    for (auto& b : bufs)
        if (!b.empty() && fwrite(b.data(), 1, b.size(), o) != b.size()) vbh::fatal("short write");
    fclose(o);
    return 0;
}
