// Single-steps a program, its threads and its forked children until they
// exec something else, and prints every distinct instruction address inside
// [lo, hi) in hex, one per line, in the order first executed. For
// scripts/release/order-symbols. Usage: stepper LO HI PROGRAM [ARGS...]
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>
#include <errno.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <sys/user.h>
#include <stddef.h>

// An open-addressing set of addresses, and the order they were added in.
static uint64_t *set, *order;
static size_t cap = 1 << 22, used;
static void add(uint64_t v) {
    size_t h = (v * 0x9E3779B97F4A7C15ull) >> 42;
    while (set[h & (cap - 1)]) {
        if (set[h & (cap - 1)] == v) return;
        h++;
    }
    if (used + 1 >= cap / 2) return; /* full enough: later addresses are dropped */
    set[h & (cap - 1)] = v;
    order[used++] = v;
}
int main(int argc, char **argv) {
    uint64_t lo = strtoull(argv[1], 0, 16), hi = strtoull(argv[2], 0, 16);
    set = calloc(cap, 8);
    order = calloc(cap / 2, 8);
    if (!set || !order) return 1;
    pid_t child = fork();
    if (child == 0) { ptrace(PTRACE_TRACEME, 0, 0, 0); raise(SIGSTOP); execv(argv[3], argv + 3); _exit(127); }
    int st; waitpid(child, &st, __WALL);
    ptrace(PTRACE_SETOPTIONS, child, 0, PTRACE_O_TRACECLONE|PTRACE_O_TRACEFORK|PTRACE_O_TRACEVFORK|PTRACE_O_TRACEEXEC|PTRACE_O_EXITKILL);
    ptrace(PTRACE_CONT, child, 0, 0);  // run to its exec
    int live = 1; int execs = 0;
    long steps = 0;
    while (live > 0) {
        pid_t t = waitpid(-1, &st, __WALL);
        if (t < 0) { if (errno == EINTR) continue; break; }
        if (WIFEXITED(st) || WIFSIGNALED(st)) { live--; continue; }
        if (!WIFSTOPPED(st)) continue;
        int sig = WSTOPSIG(st), ev = st >> 16, deliver = 0;
        if (ev == PTRACE_EVENT_CLONE || ev == PTRACE_EVENT_FORK || ev == PTRACE_EVENT_VFORK) {
            live++;
        } else if (ev == PTRACE_EVENT_EXEC) {
            execs++;
            if (t != child || execs > 1) { ptrace(PTRACE_DETACH, t, 0, 0); live--; continue; }
        } else if (sig == SIGTRAP) {
            struct user_regs_struct r;
            if (ptrace(PTRACE_GETREGS, t, 0, &r) == 0 && r.rip >= lo && r.rip < hi) add(r.rip);
            steps++;
        } else if (sig == SIGSTOP) {
            // new child's initial stop
        } else {
            deliver = sig;
        }
        ptrace(PTRACE_SINGLESTEP, t, 0, deliver);
    }
    fprintf(stderr, "steps %ld, distinct %zu\n", steps, used);
    for (size_t i = 0; i < used; i++) printf("%lx\n", (unsigned long)order[i]);
    return 0;
}
