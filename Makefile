# gpt-oss engine. `make` builds build/gptoss and build/libgptoss.a (with the CUDA
# backend when nvcc is found); `make test` builds and runs every test;
# `make asan` runs the suite under AddressSanitizer + UBSan; `make fuzz` runs
# the fuzz targets for a bounded time.
BUILD   ?= build
CC      ?= cc
NVCC    ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA    ?= $(if $(NVCC),1,0)
# sm_90a for the H200, plus portable code for Ampere and Ada.
CUDA_ARCHS ?= -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_80,code=sm_80 \
              -gencode arch=compute_86,code=sm_86 -gencode arch=compute_89,code=sm_89

PKGS    := jansson libpcre2-8 libmicrohttpd
OPT     ?= -O3 -g
SAN     ?=
CFLAGS  := $(OPT) $(SAN) -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -pthread -Iinclude -Isrc -MMD -MP \
           $(shell pkg-config --cflags $(PKGS))
LDLIBS  := $(shell pkg-config --libs $(PKGS)) -lpthread -lm
TEST_LDLIBS := -lcmocka

LIB_SRC := $(wildcard src/*.c src/cpu/*.c)
SRV_SRC := $(wildcard src/server/*.c)
CLI_SRC := $(wildcard cli/*.c)
CU_SRC  := $(wildcard src/cuda/*.cu)
TEST_SRC:= $(wildcard tests/test_*.c)

ifeq ($(CUDA),1)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CFLAGS  += -DGPTOSS_CUDA
NVFLAGS ?= -O3 -std=c++17 $(CUDA_ARCHS) -Iinclude -Isrc -DGPTOSS_CUDA -Xcompiler -Wall,-Wextra,-Werror -MMD -MP
LDLIBS  += -L$(CUDA_HOME)/lib64 -L$(CUDA_HOME)/targets/x86_64-linux/lib -lcudart -lcublas -lcublasLt -lstdc++ -ldl -lrt
CU_OBJ  := $(CU_SRC:%.cu=$(BUILD)/%.o)
endif

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o) $(SRV_SRC:%.c=$(BUILD)/%.o) $(CU_OBJ)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TESTS   := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TOOLS   := $(BUILD)/gen_checkpoint
ifeq ($(CUDA),1)
TOOLS   += $(BUILD)/gpu_stream_bench
endif

all: $(BUILD)/gptoss $(TOOLS)

$(BUILD)/libgptoss.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/gptoss: $(CLI_OBJ) $(BUILD)/libgptoss.a
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libgptoss.a $(LDLIBS)

$(BUILD)/gen_checkpoint: tools/gen_checkpoint.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< -lm

$(BUILD)/gpu_stream_bench: tools/gpu_stream_bench.cu src/cuda/cuda_matvec.cuh src/cuda/cuda_internal.h
	@mkdir -p $(dir $@)
	$(NVCC) -O3 -std=c++17 $(CUDA_ARCHS) -Isrc -Xcompiler -Wall,-Wextra,-Werror -o $@ $<

# Objects are rebuilt when the compiler flags change (CUDA on/off, sanitizers).
FLAGS_STAMP := $(BUILD)/flags.stamp
$(FLAGS_STAMP): FORCE
	@mkdir -p $(BUILD)
	@echo '$(CC) $(CFLAGS) $(NVFLAGS)' | cmp -s - $@ || echo '$(CC) $(CFLAGS) $(NVFLAGS)' > $@

$(BUILD)/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/%.o: %.cu $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/%.c $(BUILD)/libgptoss.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libgptoss.a $(LDLIBS) $(TEST_LDLIBS)

tests: $(TESTS) $(BUILD)/gptoss $(TOOLS)

test: tests
	BUILD=$(BUILD) tests/run_all.sh

# Sanitizers: a separate CPU-only build tree, same suite.
asan:
	$(MAKE) BUILD=build-asan CUDA=0 CC=clang OPT="-O1 -g -fno-omit-frame-pointer" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" test

FUZZ_SRC := $(wildcard fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=build-fuzz/%)
# One sub-make builds the instrumented library that every fuzz target links.
fuzz-lib:
	$(MAKE) BUILD=build-fuzz CUDA=0 CC=clang OPT="-O1 -g" SAN="-fsanitize=fuzzer-no-link,address,undefined" build-fuzz/libgptoss.a
build-fuzz/%: fuzz/%.c fuzz-lib
	clang -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -O1 -g -fsanitize=fuzzer,address,undefined -o $@ $< build-fuzz/libgptoss.a $(LDLIBS)

FUZZ_SECONDS ?= 60
fuzz: $(FUZZ_BIN)
	@for f in $(FUZZ_BIN); do n=$$(basename $$f); mkdir -p build-fuzz/corpus-$$n fuzz/seeds/$$n; \
	  echo "fuzz: $$n for $(FUZZ_SECONDS)s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 build-fuzz/corpus-$$n fuzz/seeds/$$n \
	    >build-fuzz/$$n.log 2>&1 || { tail -40 build-fuzz/$$n.log; exit 1; }; tail -1 build-fuzz/$$n.log; done

# Everything CI runs: the suite, the suite under ASan/UBSan, the fuzz targets (bounded).
check: test
	$(MAKE) asan
	$(MAKE) fuzz FUZZ_SECONDS=$(FUZZ_SECONDS)

clean:
	rm -rf build build-asan build-fuzz

.PHONY: all test tests asan fuzz fuzz-lib check clean FORCE
FORCE:
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
