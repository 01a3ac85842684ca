# Thin front door over CMake. Two commands do everything:
#   make demo    install dependencies, build, fetch and verify models, run the demo
#   make check   the same set-up, then every test (plain, then ASan+UBSan),
#                short fuzz runs and the static analysers
BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_SECONDS ?= 20

# Data the tests read when it exists (the golden parity files and LFW).
SHARED ?= $(abspath ../shared)
export FACENET_GOLDEN_DIR ?= $(if $(wildcard $(SHARED)/golden/README.md),$(SHARED)/golden,)
export FACENET_LFW_DIR ?= $(if $(wildcard $(SHARED)/datasets/lfw/pairs.txt),$(SHARED)/datasets/lfw,)
# Where `make models` puts the pinned models (the library's default too).
export FACENET_MODEL_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/facenet/models
# The face-api demo photos, fetched (pinned by SHA-256) by `make models`.
export FACENET_DEMO_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/facenet/demo

.PHONY: all deps build models demo check test test-asan test-tsan fuzz lint bench bench-lfw install clean

all: build

deps:
	./scripts/install-deps.sh

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD) -j $(JOBS)

models: build
	$(BUILD)/facenet models fetch
	$(BUILD)/facenet models verify
	./scripts/fetch-demo-photos.sh "$(FACENET_DEMO_DIR)"

demo: deps models
	./scripts/demo.sh $(BUILD)/facenet

test: build
	FACENET_REQUIRE_MODELS=1 ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

test-asan:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DFACENET_SANITIZE=ON \
	  -DCMAKE_C_FLAGS="-O2 -g"
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	# FACENET_TEST_QUICK: the heaviest real-photo tests run the same code
	# paths on fewer photos here; the plain pass above runs them all.
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  FACENET_REQUIRE_MODELS=1 FACENET_TEST_QUICK=1 ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(JOBS) -LE slow

# The tests that run threads over shared state (the engine's pool, the
# detector's threads, the gallery's search pool and a handle shared by
# searching and enrolling threads), under ThreadSanitizer.
TSAN_TESTS := test_pool test_detect_threads test_gallery_index test_gallery
test-tsan:
	cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS="-O1 -g -fsanitize=thread" \
	  -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread -DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=thread
	cmake --build $(TSAN_BUILD) -j $(JOBS) --target $(TSAN_TESTS)
	TSAN_OPTIONS=halt_on_error=1 FACENET_REQUIRE_MODELS=1 FACENET_TEST_QUICK=1 \
	  ctest --test-dir $(TSAN_BUILD) --output-on-failure -j $(JOBS) \
	  -R '^($(shell echo $(TSAN_TESTS) | tr ' ' '|'))$$'

fuzz:
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DFACENET_FUZZ=ON \
	  -DFACENET_SANITIZE=ON -DFACENET_TESTS=OFF -DCMAKE_C_FLAGS="-O2 -g"
	cmake --build $(FUZZ_BUILD) -j $(JOBS)
	./scripts/run-fuzzers.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

lint: build
	./scripts/lint.sh $(BUILD)

check: deps models test test-asan test-tsan fuzz lint

# The benchmark with its peers (bench/peers: raw XNNPACK, dlib's own
# ResNet), built only here, measured in the same run as our backends.
bench: models
	./scripts/install-deps.sh --bench
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD) -j $(JOBS) --target bench

# The full LFW benchmark of docs/ACCURACY.md (not a test: about an hour on
# two cores for every configuration; the embeddings are cached, so a rerun
# is quick). Reports go to $(BUILD)/bench-lfw/.
bench-lfw: models
	./scripts/bench-lfw.sh $(BUILD)/facenet "$(FACENET_LFW_DIR)" $(BUILD)/bench-lfw

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
