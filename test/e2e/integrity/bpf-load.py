"""Loads tiny cgroup_skb programs (r0 = 1; exit: every packet passes) with the raw bpf(2) system
call, as a root job would, and attaches, pins or lets go of each. Run by bpf.test.ts through sudo:
  python3 bpf-load.py attach <cgroup dir> <name> | pin <bpffs path> <name> | drop <name> ...
Exits non-zero when the kernel refuses any step."""
import ctypes
import os
import platform
import struct
import sys

# bpf(2) numbers of the architectures Debian runs runners on.
NR_BPF = {'x86_64': 321, 'aarch64': 280}[platform.machine()]
BPF_OBJ_PIN, BPF_PROG_LOAD, BPF_PROG_ATTACH = 6, 5, 8
BPF_PROG_TYPE_CGROUP_SKB, BPF_CGROUP_INET_EGRESS, BPF_F_ALLOW_MULTI = 8, 1, 2

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, 128)
    r = libc.syscall(NR_BPF, cmd, buf, 128)
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, f'bpf cmd {cmd}: {os.strerror(e)}')
    return r


def load(name):
    insns = ctypes.create_string_buffer(struct.pack('<BBhi', 0xB7, 0, 0, 1) + struct.pack('<BBhi', 0x95, 0, 0, 0))
    lic = ctypes.create_string_buffer(b'GPL')
    attr = struct.pack('<IIQQIIQII', BPF_PROG_TYPE_CGROUP_SKB, 2, ctypes.addressof(insns), ctypes.addressof(lic), 0, 0, 0, 0, 0)
    return bpf(BPF_PROG_LOAD, attr + name.encode()[:15].ljust(16, b'\0'))


args = sys.argv[1:]
while args:
    action = args.pop(0)
    if action == 'attach':
        target, name = args.pop(0), args.pop(0)
        cg = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
        bpf(BPF_PROG_ATTACH, struct.pack('<IIII', cg, load(name), BPF_CGROUP_INET_EGRESS, BPF_F_ALLOW_MULTI))
    elif action == 'pin':
        target, name = args.pop(0), args.pop(0)
        pathname = ctypes.create_string_buffer(target.encode())
        bpf(BPF_OBJ_PIN, struct.pack('<QII', ctypes.addressof(pathname), load(name), 0))
    elif action == 'drop':
        load(args.pop(0))
    else:
        sys.exit(f'unknown action {action}')
    print(action, 'ok')
