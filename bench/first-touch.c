// First touch of fresh shared memory (what lavapipe's copy thread does to every weight page):
// fresh memfd pages written one 4 KiB page at a time by 1..8 threads, after fallocate, or
// populated by one madvise(MADV_POPULATE_WRITE), or read once through /proc/self/mem in 8 MiB
// pieces (what src/weights/prefault.ts does) and then written page by page: `procmem` prints the
// two phases apart. bench/RESULTS.md "Why lavapipe loads at ~0.3 GB/s" and "Pre-faulting".
//   cc -O2 -pthread -o /tmp/first-touch bench/first-touch.c
//   /tmp/first-touch MiB touch|fallocate|populate|procmem [threads]
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static char *base;
static size_t per;

static void *touch(void *i) {
  char *p = base + (size_t)i * per;
  for (size_t at = 0; at < per; at += 4096) p[at] = 1;
  return NULL;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s MiB touch|fallocate|populate [threads]\n", argv[0]);
    return 2;
  }
  size_t total = (size_t)atol(argv[1]) << 20;
  const char *mode = argv[2];
  if (total == 0) {
    fprintf(stderr, "MiB must be a positive whole number; got '%s'\n", argv[1]);
    return 2;
  }
  if (strcmp(mode, "touch") && strcmp(mode, "fallocate") && strcmp(mode, "populate") && strcmp(mode, "procmem")) {
    fprintf(stderr, "unknown mode '%s': touch, fallocate, populate or procmem\n", mode);
    return 2;
  }
  int threads = argc > 3 ? atoi(argv[3]) : 1;
  if (threads < 1 || threads > 8) threads = 1;
  int fd = memfd_create("first-touch", 0);
  if (fd < 0 || ftruncate(fd, total)) return perror("memfd"), 1;
  double t0 = now();
  if (!strcmp(mode, "fallocate") && fallocate(fd, 0, 0, total)) return perror("fallocate"), 1;
  base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return perror("mmap"), 1;
  if (!strcmp(mode, "populate")) {
    if (madvise(base, total, MADV_POPULATE_WRITE)) return perror("madvise"), 1;
  } else {
    if (!strcmp(mode, "procmem")) {
      int mem = open("/proc/self/mem", O_RDONLY);
      static char piece[8 << 20];
      for (size_t at = 0, n; at < total; at += n) {
        n = total - at < sizeof piece ? total - at : sizeof piece;
        if (mem < 0 || pread(mem, piece, n, (off_t)(base + at)) != (ssize_t)n) return perror("/proc/self/mem"), 1;
      }
      printf("procmem: read through /proc/self/mem in %.2f s, then ", now() - t0);
    }
    pthread_t th[8];
    per = total / threads;
    for (long i = 0; i < threads; i++) pthread_create(&th[i], NULL, touch, (void *)i);
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
  }
  double s = now() - t0;
  printf("%s, %d thread(s): %.2f GB in %.2f s = %.3f GB/s\n", mode, threads, total / 1e9, s, total / 1e9 / s);
  return 0;
}
