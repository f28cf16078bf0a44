/* Native frames of a crash, where no debugger is at hand. LD_PRELOAD'ed, on SIGSEGV/SIGBUS/SIGILL it prints
   the fault (address, si_code, RIP, the bytes there, object and symbol) and the native frames, to stderr and,
   with SEGV_TRACE_DIR set, to a file there with the process's mappings; then the process dies of the same
   signal. It found why the torch packages crashed on load (docs/gpu.md, "The crash on load, found"):
     gcc -shared -fPIC -O1 -o /tmp/segv_trace.so benchmarks/gpu/segv_trace.c -ldl
     LD_PRELOAD=/tmp/segv_trace.so SEGV_TRACE_DIR=$OUT python -m pytest tests/gpu -k compiled
   then `addr2line -f -C -e OBJECT OFFSET` names each frame. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>
#include <fcntl.h>
#include <stdlib.h>

static int out = 2;

static char altstack[1 << 16];

static void say(const char *s) {
  if (write(2, s, strlen(s)) < 0) {}
  if (out != 2 && write(out, s, strlen(s)) < 0) {}
}

static void where(const char *tag, void *pc) {
  char buf[1024];
  Dl_info info;
  if (dladdr(pc, &info) && info.dli_fname) {
    snprintf(buf, sizeof buf, "[segv_trace] %s %p = %s+0x%lx (%s+0x%lx)\n", tag, pc, info.dli_fname,
             (unsigned long)((char *)pc - (char *)info.dli_fbase), info.dli_sname ? info.dli_sname : "?",
             info.dli_saddr ? (unsigned long)((char *)pc - (char *)info.dli_saddr) : 0UL);
  } else {
    snprintf(buf, sizeof buf, "[segv_trace] %s %p (no object)\n", tag, pc);
  }
  say(buf);
}

static void handler(int sig, siginfo_t *si, void *ctx) {
  ucontext_t *uc = (ucontext_t *)ctx;
  char buf[512];
  const char *dir = getenv("SEGV_TRACE_DIR");
  if (dir) {
    char path[400];
    snprintf(path, sizeof path, "%s/segv.%d.log", dir, getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) out = fd;
  }
  void *rip = (void *)uc->uc_mcontext.gregs[REG_RIP];
  snprintf(buf, sizeof buf, "[segv_trace] pid %d signal %d si_code %d addr %p rip %p rsp %p\n", getpid(), sig,
           si->si_code, si->si_addr, rip, (void *)uc->uc_mcontext.gregs[REG_RSP]);
  say(buf);
  where("rip", rip);
  unsigned char *p = (unsigned char *)rip;
  int n = snprintf(buf, sizeof buf, "[segv_trace] bytes at rip:");
  for (int i = 0; i < 16; i++) n += snprintf(buf + n, sizeof buf - n, " %02x", p[i]);
  snprintf(buf + n, sizeof buf - n, "\n");
  say(buf);
  void *frames[64];
  int k = backtrace(frames, 64);
  for (int i = 0; i < k; i++) where("frame", frames[i]);
  if (out != 2) {  /* the process's mappings, to place frames in objects that dladdr cannot name */
    int maps = open("/proc/self/maps", O_RDONLY);
    ssize_t r;
    while (maps >= 0 && (r = read(maps, buf, sizeof buf)) > 0)
      if (write(out, buf, r) < 0) break;
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

__attribute__((constructor)) static void install(void) {
  stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
  sigaltstack(&ss, NULL);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = handler;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigaction(SIGSEGV, &sa, NULL);
  sigaction(SIGBUS, &sa, NULL);
  sigaction(SIGILL, &sa, NULL);
}
