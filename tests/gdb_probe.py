"""Runs inside gdb (`source tests/gdb_probe.py`): stops a sample at every checkpoint, runs the
heap commands and records gdb's own reading of glibc's state beside them.

It does not import gdb_heap: the "truth" it records comes from glibc's debug info through
gdb's expression evaluator (main_arena, mp_, *tcache, struct malloc_chunk), from the sample's
printed facts, and from the sample's malloc_info() snapshot.  Parameters come in a JSON file
named by $GDB_HEAP_PROBE; results go to the file named inside it.
"""

import json
import os
import re
from typing import Any, Dict, List

import gdb

PARAMS = json.load(open(os.environ["GDB_HEAP_PROBE"]))


def run(command):
    try:
        return {"ok": True, "out": gdb.execute(command, to_string=True)}
    except gdb.error as e:  # GdbError reaches us as gdb.error
        return {"ok": False, "out": str(e)}


def ival(expression):
    value = gdb.parse_and_eval(expression)
    assert value is not None
    return int(value)


def facts(path):
    lines = []
    if os.path.exists(path):
        with open(path) as f:
            lines = [line.split() for line in f if line.startswith("@ ")]
    return lines


# -- where glibc's state is --------------------------------------------------------------------
# Addresses come from symbols (debug info, or a static binary's ELF symbols); in a static binary
# the types come from the matching libc6-dbg file, added with an offset only after the
# addresses are taken (its own main_arena would shadow the program's).  Everything else is
# read through casts of those addresses.

ANCHORS: Dict[str, Any] = {}


def word_size():
    return ival("sizeof(void *)")


def address_of(name):
    return ival(f"(unsigned long) &{name}")


def tls_offset(text):
    """A TLS variable's offset in its module's TLS block, from `info address tcache`: "a thread-local
    variable at offset 0x10 in the thread-local storage for `libc.so.6'" (debug info) or
    "is at 0x48 in a file compiled without debugging" (a static binary's ELF symbol)."""
    m = re.search(r"at offset (0x[0-9a-f]+)", text) or re.search(r"is at (0x[0-9a-f]+) in a file compiled", text)
    if not m:
        raise gdb.error(f"no TLS offset for tcache in: {text.strip()}")
    return int(m.group(1), 16)


TLS_NAMES = ("tcache", "thread_arena")  # malloc's thread-local variables the truth reads


def anchors():
    if not ANCHORS:
        ANCHORS["S"] = word_size()
        ANCHORS["main_arena"] = address_of("main_arena")
        ANCHORS["mp_"] = address_of("mp_")
        if PARAMS.get("static"):
            for name in TLS_NAMES:
                ANCHORS[f"{name}_offset"] = tls_offset(gdb.execute(f"info address {name}", to_string=True))
            ANCHORS["static_dtv"] = address_of("_dl_static_dtv")
            for name in ("_dl_stack_used", "_dl_stack_user", "stack_used", "__stack_user"):
                try:
                    ANCHORS[name] = address_of(name)
                except gdb.error:
                    pass
            gdb.execute(f"add-symbol-file {PARAMS['types_file']} -o {PARAMS['types_offset']:#x}", to_string=True)
    return ANCHORS


def arena():
    return f"(*(struct malloc_state *) {anchors()['main_arena']})"


def mp():
    return f"(*(struct malloc_par *) {anchors()['mp_']})"


def walk_regular_bins(S):
    """Bins 1..126 from main_arena.bins, following fd through struct malloc_chunk."""
    chains = {}
    bins = gdb.parse_and_eval(f"{arena()}.bins")
    fd = field_offset("struct malloc_chunk", "fd")
    for i in range(1, 127):
        slot = bins[2 * (i - 1)]
        assert slot.address is not None
        header = int(slot.address) - 2 * S
        p = int(bins[2 * (i - 1)])
        chain: List[int] = []
        while p not in (header, 0) and len(chain) < 100000:  # 0: bins not set up before malloc_init
            chain.append(p)
            p = raw_word(p + fd)
        if chain:
            chains[i] = chain
    return chains


def fastbins():
    try:
        heads = gdb.parse_and_eval(f"{arena()}.fastbinsY")
    except gdb.error:
        return None  # glibc 2.43+: no fastbins
    lo, hi = heads.type.range()
    # Raw fd words: the test reveals them (safe-linking) by its own arithmetic.
    out = {}
    for i in range(lo, hi + 1):
        p = int(heads[i])
        if p:
            out[i] = {"head": p}
    return out


def raw_word(address):
    """One word of inferior memory (bulk reads, not gdb expressions: a heap has 30000 chunks)."""
    S = anchors()["S"]
    return int.from_bytes(bytes(gdb.selected_inferior().read_memory(address, S)), "little")


def field_offset(struct, field):
    """A field's offset, from glibc's debug info (struct malloc_chunk's fd, mchunk_size)."""
    for f in gdb.lookup_type(struct).fields():
        if f.name == field and f.bitpos is not None:
            return f.bitpos // 8
    raise gdb.error(f"{struct} has no field {field}")


# -- the thread-local `tcache`, with or without gdb's TLS support -----------------------------
# gdb reads `tcache` only through a libthread_db matching the inferior's glibc (not for 2.31,
# 2.43+, most i386).  Otherwise: the thread's dtv (struct dtv_t array: 2 words an entry,
# entry[modid].pointer.val = the module's TLS block) plus tcache's offset in libc's block.

def dtv_entry(dtv, modid):
    return raw_word(dtv + modid * 2 * anchors()["S"])


def libc_tls():
    """(libc's TLS module id, the initial thread's dtv) in a dynamic
    program, through ld.so's debug info (reference: running-other-glibc.md §3)."""
    if "libc_modid" not in ANCHORS:
        S = anchors()["S"]
        blk = gdb.block_for_pc(address_of("_dl_debug_state"))
        if blk is None:
            raise gdb.error("no debug info for ld.so (its link_map type finds libc's TLS module)")
        lmp = gdb.lookup_type("struct link_map", blk).pointer()
        lm = gdb.Value(address_of("_r_debug") + S).cast(lmp.pointer()).dereference()
        for _ in range(1000):
            if "libc.so" in lm["l_name"].string():
                break
            lm = lm["l_next"].dereference()
        ANCHORS["libc_modid"] = int(lm["l_tls_modid"])
        for name in TLS_NAMES:
            ANCHORS[f"{name}_offset"] = tls_offset(gdb.execute(f"info address {name}", to_string=True))
        ANCHORS["initial_dtv"] = ival("(unsigned long) _rtld_global._dl_initial_dtv")
    return ANCHORS["libc_modid"], ANCHORS["initial_dtv"]


def thread_dtv(main):
    """The selected thread's dtv: the initial one for the main thread; else tcbhead_t.dtv, the
    word after the thread pointer ($fs_base on x86-64); on i386, where gdb shows no segment
    base, the dtv in the thread's struct pthread, found by its tid on glibc's thread lists."""
    if main:
        return anchors()["static_dtv"] + 2 * anchors()["S"] if PARAMS.get("static") else libc_tls()[1]
    try:
        tp = ival("(unsigned long) $fs_base")
    except gdb.error:
        tp = 0
    if tp:
        return raw_word(tp + anchors()["S"])
    lwp = gdb.selected_thread().ptid[1]
    dtvs = pthread_dtvs()
    if lwp not in dtvs:
        raise gdb.error(f"thread {lwp} is on none of glibc's thread lists")
    return dtvs[lwp]


def member_offset(struct, name, depth=0):
    """A member's offset, looking inside anonymous unions and structs (struct pthread's
    header sits in one)."""
    for f in struct.strip_typedefs().fields():
        if f.bitpos is None:
            continue
        if f.name == name:
            return f.bitpos // 8
        if not f.name and depth < 4:
            try:
                return f.bitpos // 8 + member_offset(f.type, name, depth + 1)
            except KeyError:
                pass
    raise KeyError(f"{struct} has no member {name}")


def list_heads():
    """Addresses of glibc's lists of struct pthread (threads on their own stacks and on user
    stacks): in ld.so's _rtld_global since 2.34, libpthread's statics before."""
    if PARAMS.get("static"):
        return [anchors()[n] for n in ("_dl_stack_used", "_dl_stack_user", "stack_used", "__stack_user")
                if n in anchors()]
    for names in (("_rtld_global._dl_stack_used", "_rtld_global._dl_stack_user"), ("stack_used", "__stack_user")):
        try:
            return [address_of(n) for n in names]
        except gdb.error:
            continue
    raise gdb.error("no list of threads found (_dl_stack_used, stack_used)")


def pthread_dtvs():
    """LWP -> dtv, from every struct pthread on glibc's lists (offsets from its debug info)."""
    if "pthread_dtvs" not in ANCHORS:
        pthread = gdb.lookup_type("struct pthread")
        offsets = {name: member_offset(pthread, name) for name in ("list", "tid", "header")}
        dtv_at = offsets["header"] + member_offset(gdb.lookup_type("tcbhead_t"), "dtv")
        out = {}
        for head in list_heads():
            p = raw_word(head)
            for _ in range(10000):
                if p in (head, 0):
                    break
                pd = p - offsets["list"]
                tid = int.from_bytes(bytes(gdb.selected_inferior().read_memory(pd + offsets["tid"], 4)), "little")
                out[tid] = raw_word(pd + dtv_at)
                p = raw_word(p)
        ANCHORS["pthread_dtvs"] = out
    return ANCHORS["pthread_dtvs"]


def tls_address(name, main=True):
    """&name (a libc TLS variable) in the selected thread: gdb's own TLS support first, then
    the thread's dtv plus the variable's offset in libc's TLS block."""
    if not PARAMS.get("static"):
        try:
            return address_of(name), "gdb"
        except gdb.error:
            pass
    dtv = thread_dtv(main)
    if PARAMS.get("static"):
        return dtv_entry(dtv, 1) + anchors()[f"{name}_offset"], "dtv"  # the program is module 1
    modid, _ = libc_tls()
    return dtv_entry(dtv, modid) + ANCHORS[f"{name}_offset"], "dtv"


def tls_word(name, main=True):
    return raw_word(tls_address(name, main)[0])


def tcache(main=True):
    try:
        where, how = tls_address("tcache", main)
        pointer = raw_word(where)
        if pointer == 0:
            return {"error": "tcache is NULL", "via": how}
        t = gdb.parse_and_eval(f"*(tcache_perthread_struct *) {pointer}")
        t.fetch_lazy()
    except gdb.error as e:
        return {"error": str(e)}
    names = [f.name for f in t.type.strip_typedefs().fields()]
    counts_name = "counts" if "counts" in names else "num_slots"
    n = t[counts_name].type.range()[1] + 1
    return {"address": pointer, "counts_field": counts_name, "via": how,
            "counts": [int(t[counts_name][i]) for i in range(n)],
            "entries": [int(t["entries"][i]) for i in range(n)]}


def tcache_chunks(S, main=True):
    """Chunk addresses in the selected thread's tcache, through gdb's reading of `*tcache`."""
    t = tcache(main)
    if "error" in t and t["error"] != "tcache is NULL":
        raise gdb.error(f"tcache of thread {gdb.selected_thread().num}: {t['error']}")
    chunks: List[int] = []
    for e in t.get("entries", []):
        while e and len(chunks) < 100000:
            chunks.append(e - 2 * S)
            stored = raw_word(e)
            e = stored ^ (e >> 12) if PARAMS.get("safe_linking") else stored
    return chunks


def per_thread(read):
    """thread number -> read(thread), with each thread selected in turn; gdb's selected thread
    and frame are restored."""
    selected, frame = gdb.selected_thread(), gdb.selected_frame()
    out = {}
    try:
        for thread in gdb.selected_inferior().threads():
            thread.switch()
            out[str(thread.num)] = read(thread)
    except gdb.error as e:
        return {"error": str(e)}
    finally:
        selected.switch()
        frame.select()
    return out


def every_thread_tcache(S):
    """thread number -> its tcache's chunks."""
    return per_thread(lambda thread: tcache_chunks(S, main=thread.num == 1))


def arenas_truth(S):
    """Every arena on the next ring and its heap_info chain, through glibc's debug info."""
    heap_max = (64 << 20) if S == 8 else (1 << 20)  # HEAP_MAX_SIZE (x86-64 / i386)
    main = anchors()["main_arena"]
    out: List[Dict[str, Any]] = []
    a = main
    while len(out) < 64:
        st = f"((struct malloc_state *) {a})"
        rec = {"address": a, "top": ival(f"(unsigned long) {st}->top"), "next": ival(f"(unsigned long) {st}->next"),
               "system_mem": ival(f"{st}->system_mem"), "attached_threads": ival(f"{st}->attached_threads"),
               "heaps": []}
        h = rec["top"] & ~(heap_max - 1) if a != main else 0
        while h and len(rec["heaps"]) < 1000:
            hi = f"((heap_info *) {h})"
            rec["heaps"].append({"heap_info": h, "ar_ptr": ival(f"(unsigned long) {hi}->ar_ptr"),
                                 "size": ival(f"{hi}->size"), "mprotect_size": ival(f"{hi}->mprotect_size")})
            h = ival(f"(unsigned long) {hi}->prev")
        out.append(rec)
        a = rec["next"]
        if a == main:
            break
    return out


def threads_truth(S):
    """Per thread (gdb's number): its LWP, thread_arena, tcache and tcache chunks, by debug info
    (gdb's TLS support, or the dtv where gdb has none; {"error": ...} where neither works)."""
    def read(thread):
        try:
            main = thread.num == 1
            return {"lwp": thread.ptid[1], "arena": tls_word("thread_arena", main),
                    "tcache": tls_word("tcache", main), "chunks": tcache_chunks(S, main=main)}
        except gdb.error as e:
            return {"error": str(e)}
    return per_thread(read)


def heap_walk(S):
    """Chunk addresses and size words from mp_.sbrk_base to the end of top, via debug info;
    where the heap is not contiguous, to the first fencepost (a size of two words)."""
    top = ival(f"{arena()}.top")
    start = ival(f"{mp()}.sbrk_base")
    while (start + 2 * S) % 16:
        start += S
    chunks: List[List[int]] = []
    size_at = field_offset("struct malloc_chunk", "mchunk_size")
    length = top + size_at + S - start
    contiguous = 0 < length <= ival(f"{arena()}.system_mem")  # else top is in another region
    memory = bytes(gdb.selected_inferior().read_memory(start, length)) if contiguous else b""
    p = start
    while len(chunks) < 200000:
        size = (int.from_bytes(memory[p - start + size_at: p - start + size_at + S], "little") if contiguous
                else raw_word(p + size_at))
        chunks.append([p, size])
        if p == top or size & ~7 <= 2 * S:
            break
        p += size & ~7
    return chunks


def truth():
    S = anchors()["S"]
    a, m = arena(), mp()
    t = {"S": S, "main_arena": anchors()["main_arena"], "top": ival(f"{a}.top"),
         "system_mem": ival(f"{a}.system_mem"), "sbrk_base": ival(f"{m}.sbrk_base"),
         "tcache_count": ival(f"{m}.tcache_count"), "n_mmaps": ival(f"{m}.n_mmaps"),
         "mmap_threshold": ival(f"{m}.mmap_threshold"),
         "unsorted_header": ival(f"(unsigned long) &{a}.bins[0]") - 2 * S}
    initial = t["top"] in (0, t["unsorted_header"])
    t["initialised"] = not initial and t["sbrk_base"] != 0
    if t["initialised"]:
        t["top_size"] = ival(f"((struct malloc_chunk *) {t['top']})->mchunk_size") & ~7
        t["chunks"] = heap_walk(S)
    t["bins"] = {str(k): v for k, v in walk_regular_bins(S).items()}
    fb = fastbins()
    if fb is not None:
        for entry in fb.values():
            chain: List[int] = []
            p = entry["head"]
            while p and len(chain) < 100000:
                chain.append(p)
                stored = raw_word(p + 2 * S)
                p = stored ^ ((p + 2 * S) >> 12) if PARAMS.get("safe_linking") else stored
            entry["chain"] = chain
    t["fastbins"] = {str(k): v for k, v in fb.items()} if fb is not None else None
    t["tcache"] = tcache(main=gdb.selected_thread().num == 1)
    if "entries" in t["tcache"]:
        chains = []
        for e in t["tcache"]["entries"]:
            tchain: List[int] = []
            while e and len(tchain) < 1000:
                tchain.append(e)
                stored = raw_word(e)
                e = stored ^ (e >> 12) if PARAMS.get("safe_linking") else stored
            chains.append(tchain)
        t["tcache"]["chains"] = chains
    if PARAMS.get("thread_tcaches"):
        t["thread_tcaches"] = every_thread_tcache(S)
    if PARAMS.get("arenas_truth"):
        t["arenas"] = arenas_truth(S)
        t["threads"] = threads_truth(S)
    try:
        t["malloc_info"] = gdb.parse_and_eval("(char *) mi_buf").string()
    except gdb.error:
        t["malloc_info"] = None
    return t


def how_it_ended(end):
    """Fills `end` with how the program stopped last: {"signal": "SIGABRT"} or {"exit_code": 0}
    (gdb's own stop and exit events)."""
    def stopped(event):
        if isinstance(event, gdb.SignalEvent):
            end.clear()
            end["signal"] = event.stop_signal

    def exited(event):
        end.clear()
        end["exit_code"] = getattr(event, "exit_code", None)
    gdb.events.stop.connect(stopped)
    gdb.events.exited.connect(exited)


def main():
    gdb.execute("set pagination off")
    gdb.execute("set confirm off")
    gdb.execute(f"source {PARAMS['init']}")
    stages: List[Dict[str, Any]] = []
    end: Dict[str, Any] = {}
    how_it_ended(end)
    results = {"before_run": {c: run(c) for c in PARAMS.get("before_run", [])}, "stages": stages, "end": end}
    gdb.execute("break checkpoint")
    args = " ".join(PARAMS.get("args", []))
    gdb.execute(f"run {args} > {PARAMS['program_out']}")
    while gdb.selected_inferior().pid:
        frame = gdb.selected_frame()
        if frame.name() != "checkpoint":
            break
        stage = ival("stage")
        commands = list(PARAMS.get("commands", []))
        if PARAMS.get("chunk_for_pointers"):
            for f in facts(PARAMS["program_out"]):
                if f[1] == "ptr":
                    commands.append(f"heap chunk {f[3]} --json")
        record = {"stage": stage, "facts": facts(PARAMS["program_out"]),
                  "commands": {c: run(c) for c in commands}}
        record["truth"] = truth() if PARAMS.get("truth", True) else None
        stages.append(record)
        if stage >= PARAMS.get("last_stage", 1 << 30):
            break
        gdb.execute("continue")
    with open(PARAMS["result"], "w") as f:
        json.dump(results, f)


try:
    main()
except Exception as e:  # report, so the test shows what went wrong inside gdb
    with open(PARAMS["result"], "w") as f:
        json.dump({"probe_error": f"{type(e).__name__}: {e}"}, f)
