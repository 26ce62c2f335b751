# Thin wrapper around CMake so that `make` at the root builds everything.
#   make          release build in build/ (programs in build/bin, plugin in build/lib)
#   make check    ASan+UBSan build in build-asan/, then every test through CTest
#                 (the release build first: the bench/smoke test runs it)
#   make clean    removes both build trees
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all check test clean format
all:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build build -j $(JOBS)

check: all
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCF_SANITIZE=ON >/dev/null
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS)

test: all
	cd build && ctest --output-on-failure -j $(JOBS)

format:
	clang-format -i src/*/*.[ch] tests/unit/*.c

clean:
	rm -rf build build-asan
