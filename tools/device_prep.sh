#!/usr/bin/env bash
# tools/device_prep.sh - run HERE (no GPU needed) before a device call: builds
# $B (default build-final; sm_90a only, to keep it small and quick), the measurement
# driver src/cuda/cuda_probe.c, and copies the non-CUDA shared libraries the
# binaries need into $B/devlibs (the GPU image may lack them).
# Then: run(command="bash tools/device_run.sh", carry=["build-final"]).
set -eu
cd "$(dirname "$0")/.."
B=${B:-build-final}
ARCH="-gencode arch=compute_90a,code=sm_90a ${EXTRA_ARCH_FLAGS:-}"
# another engineer's file may not compile yet under -Werror: build it without -Werror then
for f in src/*.c src/cpu/*.c src/server/*.c; do
    o=$B/${f%.c}.o
    make -s BUILD=$B CUDA=1 CUDA_ARCHS="$ARCH" $o 2>/dev/null || { mkdir -p $(dirname $o);
        echo "device_prep: $f fails -Werror, compiled with warnings"; cc -O3 -g -std=c11 -D_GNU_SOURCE -pthread -Iinclude -Isrc -DGPTOSS_CUDA -MMD -MP \
        $(pkg-config --cflags jansson libpcre2-8 libmicrohttpd) -c -o $o $f; }
done
make -j2 BUILD=$B CUDA=1 CUDA_ARCHS="$ARCH" $B/libgptoss.a $B/gen_checkpoint $B/tests/test_cuda_parity
make -j2 BUILD=$B CUDA=1 CUDA_ARCHS="$ARCH" $B/gptoss || echo "device_prep: gptoss CLI did not build (bench falls back to cuda_probe)"
make BUILD=$B CUDA=1 CUDA_ARCHS="$ARCH" $B/gpu_stream_bench
CUDA_HOME=$(dirname "$(dirname "$(command -v nvcc)")")
cc -O2 -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -Iinclude -Isrc -I"$CUDA_HOME/include" \
   -o $B/cuda_probe src/cuda/cuda_probe.c $B/libgptoss.a \
   $(pkg-config --libs jansson libpcre2-8 libmicrohttpd) -lpthread -lm \
   -L"$CUDA_HOME/lib64" -lcudart -lcublas -lcublasLt -lstdc++ -ldl -lrt
mkdir -p $B/devlibs
for lib in libjansson.so.4 libcmocka.so.0 libmicrohttpd.so.12 libpcre2-8.so.0; do
    p=$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64/ {print $NF; exit}')
    [ -n "$p" ] && cp -L "$p" $B/devlibs/
done
du -sh $B
