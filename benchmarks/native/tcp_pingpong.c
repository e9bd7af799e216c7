/* The reference for the probe's round-trip time: a plain TCP ping-pong of
 * 16-byte messages (the size of the probe's PING frame) with TCP_NODELAY,
 * one blocking send and one blocking receive per leg.
 *
 *   cc -O2 -o tcp_pingpong tcp_pingpong.c
 *   tcp_pingpong SAMPLES   -> prints the median and minimum RTT in µs
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { kMessage = 16, kWarmup = 5 };

static int read_full(int fd, char* buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = recv(fd, buf + got, n - got, 0);
    if (r <= 0) return -1;
    got += (size_t)r;
  }
  return 0;
}

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

int main(int argc, char** argv) {
  int samples = argc > 1 ? atoi(argv[1]) : 1000;
  int one = 1;
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof addr;
  if (bind(listener, (struct sockaddr*)&addr, sizeof addr) || listen(listener, 1) ||
      getsockname(listener, (struct sockaddr*)&addr, &len)) {
    perror("listen");
    return 1;
  }
  pid_t child = fork();
  if (child == 0) { /* echo server */
    int fd = accept(listener, NULL, NULL);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char buf[kMessage];
    while (read_full(fd, buf, kMessage) == 0) send(fd, buf, kMessage, 0);
    _exit(0);
  }
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, (struct sockaddr*)&addr, sizeof addr)) {
    perror("connect");
    return 1;
  }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  double* rtt = malloc(sizeof(double) * (size_t)samples);
  char buf[kMessage];
  memset(buf, 7, sizeof buf);
  for (int i = -kWarmup; i < samples; ++i) {
    double t0 = now_us();
    send(fd, buf, kMessage, 0);
    if (read_full(fd, buf, kMessage)) return 1;
    if (i >= 0) rtt[i] = now_us() - t0;
  }
  close(fd);
  waitpid(child, NULL, 0);
  qsort(rtt, (size_t)samples, sizeof(double), cmp);
  double median = samples % 2 ? rtt[samples / 2] : (rtt[samples / 2 - 1] + rtt[samples / 2]) / 2;
  printf("%.3f %.3f\n", median, rtt[0]);
  free(rtt);
  return 0;
}
