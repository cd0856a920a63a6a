# tally — a thin wrapper around CMake. `make demo` and `make test` work on a fresh Debian machine:
# they install what is missing (with apt-get), build, and run.

BUILD      ?= build
ASAN_BUILD ?= build-asan
CLANG_BUILD ?= build-clang
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 300
FUZZ_RUNS    ?= -1
FUZZ_TARGETS = fuzz_apply fuzz_delta fuzz_journal fuzz_snapshot fuzz_session fuzz_sim fuzz_control \
               fuzz_config fuzz_cert
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
SEEDS      ?= 100000
ROUNDS     ?= 10000
SIM_FLAGS  ?=

# Debian packages for each pkg-config module and command the build needs. clang's sanitizer
# and libFuzzer runtimes (libclang-rt-dev) are only a recommendation of clang, so they are
# checked for separately.
PC_PACKAGES  = libxxhash:libxxhash-dev libcrypto:libssl-dev libuv:libuv1-dev jansson:libjansson-dev cmocka:libcmocka-dev sqlite3:libsqlite3-dev
CMD_PACKAGES = cmake:cmake pkg-config:pkg-config gcc:gcc clang:clang make:make nm:binutils
, := ,
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps build test demo demo-local sim crash bench fuzz fuzz-build fuzz-corpus clean format

all: build

# Installs only what is missing, and says what it installs.
deps:
	@missing=""; \
	for pair in $(CMD_PACKAGES); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	for pair in $(PC_PACKAGES); do \
	  if ! command -v pkg-config >/dev/null 2>&1 || ! pkg-config --exists "$${pair%%:*}"; then \
	    missing="$$missing $${pair#*:}"; fi; \
	done; \
	asan="libclang_rt.asan-$$(uname -m).a"; \
	if ! command -v clang >/dev/null 2>&1 || [ ! -f "$$(clang -print-file-name=$$asan)" ]; then \
	  missing="$$missing libclang-rt-dev"; fi; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	echo "make deps: installing$$missing"; \
	$(SUDO) apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing

# Build output goes to a log file, one line a stage on the terminal; a stage that fails prints
# the end of its log. `make V=1 ...` shows everything as it comes.
V ?= 0
# $(call quietly,what,log file,command)
ifeq ($(V),0)
quietly = @echo "== $(1)"; mkdir -p $(dir $(2)); ( $(3) ) > $(2) 2>&1 || \
  { echo "== $(1): failed; the end of $(2):"; tail -n 60 $(2); exit 1; }
else
quietly = @echo "== $(1)"; $(3)
endif

$(BUILD)/CMakeCache.txt: | deps
	$(call quietly,configure: gcc$(,) Release$(,) -Werror,$(BUILD)/configure.log,\
	  cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DTALLY_WERROR=ON)

build: deps $(BUILD)/CMakeCache.txt
	$(call quietly,build: gcc$(,) Release (log: $(BUILD)/build.log),$(BUILD)/build.log,\
	  cmake --build $(BUILD) -j $(JOBS))

# gcc build (Release) and clang build with ASan+UBSan, each with -Werror, each running every test
# (but test_install in the sanitizer build: see tests/CMakeLists.txt); then the fuzz targets'
# corpora replayed and each fuzzed briefly.
test: build
	@echo "== tests: gcc, Release"
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)
	$(call quietly,build: clang$(,) ASan+UBSan (log: $(ASAN_BUILD)/build.log),\
	  $(ASAN_BUILD)/build.log,\
	  CC=clang cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTALLY_WERROR=ON \
	    -DTALLY_SANITIZE=ON && cmake --build $(ASAN_BUILD) -j $(JOBS))
	@echo "== tests: clang, ASan+UBSan (test_install is skipped here: it links an installed"
	@echo "   library into ordinary applications, which lack the sanitizer runtime)"
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(JOBS)
	@$(MAKE) --no-print-directory fuzz-build
	@echo "== fuzz targets: each corpus replayed, then each target fuzzed for 10 s"
	ctest --test-dir $(FUZZ_BUILD) --output-on-failure -j $(JOBS)

# The libFuzzer targets (clang, ASan+UBSan, checksums accepted whatever they are).
fuzz-build: deps
	$(call quietly,build: the fuzz targets (log: $(FUZZ_BUILD)/build.log),$(FUZZ_BUILD)/build.log,\
	  CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTALLY_FUZZ=ON \
	    -DTALLY_TESTS=OFF -DTALLY_WERROR=ON && cmake --build $(FUZZ_BUILD) -j $(JOBS))

# Fuzzes every target for FUZZ_SECONDS each, or until FUZZ_RUNS executions if that comes first
# (-1: no limit); new inputs go to fuzz/out/<target>, findings to fuzz/out/crash-*.
fuzz: fuzz-build
	@mkdir -p fuzz/out
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/out/$$t; echo "== $$t, $(FUZZ_SECONDS) s"; \
	  dict=""; [ -f fuzz/dict/$$t.dict ] && dict="-dict=../dict/$$t.dict"; \
	  (cd fuzz/out && ../../$(FUZZ_BUILD)/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) \
	    -runs=$(FUZZ_RUNS) $$dict \
	    -print_final_stats=1 $$t ../corpus/$$t 2>&1 | grep -E "DONE|stat::") || exit 1; \
	done

# Regenerates the seed corpora from valid states.
fuzz-corpus: fuzz-build
	./$(FUZZ_BUILD)/fuzz/gen_corpus fuzz/corpus

# The double-spend problem played by three tallyd processes over loopback TCP.
demo: build
	bash tests/demo/network_demo.sh $(BUILD)

# The same scenario on three replicas in one process, through the library's sync calls.
demo-local: build
	./$(BUILD)/tests/tally_demo

# Long simulator runs: make sim SEEDS=100000 [SIM_FLAGS="--replicas 7 --steps 4000"]
sim: build
	./$(BUILD)/tests/tally_sim --seeds $(SEEDS) $(SIM_FLAGS)

# kill -9 during durable writes, then check nothing acknowledged was lost: make crash ROUNDS=N
crash: build
	TALLY_CRASH_ROUNDS=$(ROUNDS) ./$(BUILD)/tests/test_crash

bench: build
	./$(BUILD)/tests/tally_bench --apply-rounds 5
	./$(BUILD)/tests/tally_bench_durable
	./$(BUILD)/tests/tally_bench_net

format:
	clang-format -i include/*.h crdt/*.[ch] ledger/*.[ch] tests/*.[ch] tests/*/*.c

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(CLANG_BUILD) $(FUZZ_BUILD) fuzz/out
