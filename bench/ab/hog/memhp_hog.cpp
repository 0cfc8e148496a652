// SPDX-License-Identifier: Apache-2.0
// memhp-hog: sets a lab guest's memory up for the `memhp ab` scenarios and
// holds it until it is killed. Runs inside the guest (started by the agent).
//
//   pressure  --margin M: allocates, touches and mlock()s node N's free memory
//             until MemFree of the node is down to M (nothing left that
//             reclaim could give back).
//   fragment: leaves node N with plenty of free memory but no free block of
//             order >= 9: fills memory with 4 KiB pages, frees every page
//             with an odd frame number (its buddy, even, stays locked, so no
//             two free pages can merge), takes any high-order block left
//             (and the order-9 pages the per-CPU lists cache) with
//             transparent huge pages, again and again while it waits, and
//             switches compaction off so the kernel cannot rebuild order-9
//             blocks.
//
// Prints "memhp-hog: ready {json}" once set up (or "memhp-hog: failed: ..."
// and exits 1), then waits for SIGTERM/SIGINT. It makes itself the OOM
// killer's first choice (oom_score_adj 1000): under pressure the hog, not the
// agent or the tracer, is what a hot-add's OOM kill takes.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "memhp/error.hpp"
#include "memhp/files.hpp"
#include "memhp/procfs.hpp"
#include "memhp/size.hpp"

using nlohmann::json;

namespace {

constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kHuge = std::uint64_t{2} << 20;
constexpr unsigned kPmdOrder = 9;
constexpr int kMpolBind = 2;  // MPOL_BIND (linux/mempolicy.h)

volatile sig_atomic_t g_stop = 0;

void say(const std::string& s) {
    std::printf("memhp-hog: %s\n", s.c_str());
    std::fflush(stdout);
}

std::string node_dir(int node) { return "/sys/devices/system/node/node" + std::to_string(node); }

std::uint64_t node_free_bytes(int node) {
    auto kv = memhp::parse_meminfo(memhp::read_file(node_dir(node) + "/meminfo"));
    return kv["MemFree"] * 1024;
}

// Node `node`'s free blocks from one read of /proc/buddyinfo: "buddyinfo"
// ("ZONE: n0 n1 ..." lines), "high_order_free_blocks_by_zone" (order >= 9,
// {"DMA": 1, "DMA32": 0}) and their sum, "high_order_free_blocks".
json buddy_report(int node) {
    const auto zones = memhp::parse_buddyinfo(memhp::read_file("/proc/buddyinfo"));
    std::string text;
    json by_zone = json::object();
    for (const auto& z : zones) {
        if (z.node != node) continue;
        text += z.zone + ":";
        for (auto v : z.free) text += " " + std::to_string(v);
        text += "\n";
        by_zone[z.zone] = z.blocks_at_least(kPmdOrder);
    }
    return {{"buddyinfo", text},
            {"high_order_free_blocks_by_zone", by_zone},
            {"high_order_free_blocks", memhp::high_order_free_blocks(zones, node, kPmdOrder)}};
}

json watermarks(int node) {
    std::uint64_t mn = 0, lo = 0, hi = 0;
    for (const auto& z : memhp::parse_zoneinfo(memhp::read_file("/proc/zoneinfo")))
        if (z.node == node) {
            mn += z.min_pages;
            lo += z.low_pages;
            hi += z.high_pages;
        }
    return {{"min_bytes", mn * kPage}, {"low_bytes", lo * kPage}, {"high_bytes", hi * kPage}};
}

// Writes a /proc/sys or /sys knob; returns the old value ("" if unreadable).
std::string set_knob(const std::string& path, const std::string& value, json& record) {
    auto old = memhp::try_read_file(path);
    try {
        memhp::write_file(path, value);
        record[path] = value;
    } catch (const std::exception& e) {
        say(std::string("warning: ") + e.what());
        record[path] = "unchanged: " + std::string(e.what());
    }
    return old ? memhp::trim(*old) : std::string();
}

void bind_to(int node) {
    unsigned long mask = 1UL << node;
    if (::syscall(SYS_set_mempolicy, kMpolBind, &mask, sizeof(mask) * 8 + 1) != 0)
        throw memhp::Error(memhp::errno_text("set_mempolicy(MPOL_BIND, node " + std::to_string(node) + ")", errno));
}

void* map_anon(std::uint64_t bytes) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw memhp::Error(memhp::errno_text("mmap " + std::to_string(bytes) + " bytes", errno));
    return p;
}

// Pressure: lock memory in shrinking chunks until MemFree reaches the margin,
// and give some back when it ends up below it: other tasks (the tracer's ring
// buffer, the agent, page cache refilling) allocate while the hog locks, and a
// CI run once left the node 5 MiB under a 52 MiB margin.
json pressure(int node, std::uint64_t margin) {
    struct Region {
        void* base;
        std::uint64_t bytes;
    };
    std::vector<Region> regions;
    std::uint64_t locked = 0, released = 0;
    int chunks = 0, settles = 0;
    constexpr std::uint64_t kBand = 256 * kPage;  // 1 MiB either side counts as there
    // Unmaps the tail of the newest regions (munmap of part of a mapping is
    // fine): the locked pages go straight back to the free lists.
    const auto give_back = [&](std::uint64_t bytes) {
        while (bytes > 0 && !regions.empty()) {
            auto& r = regions.back();
            const std::uint64_t cut = std::min(bytes, r.bytes);
            if (::munmap(static_cast<char*>(r.base) + (r.bytes - cut), cut) != 0)
                throw memhp::Error(memhp::errno_text("munmap " + std::to_string(cut) + " bytes", errno));
            r.bytes -= cut;
            bytes -= cut;
            locked -= cut;
            released += cut;
            if (r.bytes == 0) regions.pop_back();
        }
    };
    // kswapd keeps reclaiming towards the high watermark for a while, which
    // raises MemFree again: top up (or give back) until it stays in the band.
    for (; settles < 16; ++settles) {
        for (int i = 0; i < 400; ++i) {
            const auto free = node_free_bytes(node);
            if (free <= margin + 16 * kPage) break;
            // Page tables and reclaim move MemFree too: approach in steps.
            std::uint64_t want = free - margin;
            want = want > (64u << 20) ? want - want / 16 : want - want / 64;
            want = std::max<std::uint64_t>(want / kPage * kPage, kPage);
            void* p = map_anon(want);
            if (::mlock(p, want) != 0)
                throw memhp::Error(memhp::errno_text("mlock " + std::to_string(want) + " bytes", errno));
            regions.push_back({p, want});
            locked += want;
            ++chunks;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let kswapd finish
        const auto free = node_free_bytes(node);
        if (free + kBand < margin) {
            give_back((margin - free) / kPage * kPage);
            continue;
        }
        if (free <= margin + kBand) break;
    }
    return {{"locked_bytes", locked}, {"released_bytes", released}, {"chunks", chunks}, {"settle_rounds", settles}};
}

// The area huge pages are faulted into to take free order >= 9 blocks.
struct ThpArea {
    unsigned char* base = nullptr;
    std::uint64_t size = 0, touched = 0;  // touched: 2 MiB slots holding a huge page
    int node = 0;
    int pagemap = -1;
} g_thp;

// True when `addr` (2 MiB aligned, just touched) got a huge page: a 4 KiB
// anonymous fault maps one page, so the next page is present only in a THP.
bool got_huge_page(const unsigned char* addr) {
    std::uint64_t e = 0;
    const auto off = static_cast<off_t>((reinterpret_cast<std::uintptr_t>(addr) / kPage + 1) * sizeof e);
    return ::pread(g_thp.pagemap, &e, sizeof e, off) == sizeof e && (e >> 63);
}

// Faults huge pages in, on every CPU, until a fault gets none: that takes
// the free order >= 9 blocks of the buddy lists and the order-9 pages the
// per-CPU lists cache (6.1 keeps THP-sized pages there, out of
// /proc/buddyinfo's sight, and the vmemmap allocation takes them first).
// Reclaim and khugepaged keep making such blocks, so the hog repeats this
// while it waits. The area is not locked: without swap, with compaction off
// and no THP defrag, nothing moves or reclaims these pages.
void take_high_order_blocks() {
    const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
    for (long cpu = 0; cpu < std::max(cpus, 1L); ++cpu) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(static_cast<int>(cpu), &set);
        (void)::sched_setaffinity(0, sizeof set, &set);
        while (g_thp.touched < g_thp.size) {
            unsigned char* slot = g_thp.base + g_thp.touched;
            slot[0] = 1;
            if (!got_huge_page(slot)) {  // a 4 KiB page: give it back, the slot is reused
                (void)::madvise(slot, kHuge, MADV_DONTNEED);
                break;
            }
            g_thp.touched += kHuge;
        }
    }
    cpu_set_t all;
    CPU_ZERO(&all);
    for (long cpu = 0; cpu < std::max(cpus, 1L); ++cpu) CPU_SET(static_cast<int>(cpu), &all);
    (void)::sched_setaffinity(0, sizeof all, &all);
}

// Fragment: see the file comment.
json fragment(int node, std::uint64_t reserve, json& knobs) {
    // Compaction off: not proactively, not for unevictable (mlocked) pages,
    // and never for high orders (a fragmentation index <= 1000 always says
    // "reclaim, don't compact"). THP faults must not compact either.
    set_knob("/proc/sys/vm/compaction_proactiveness", "0", knobs);
    set_knob("/proc/sys/vm/compact_unevictable_allowed", "0", knobs);
    set_knob("/proc/sys/vm/extfrag_threshold", "1000", knobs);
    set_knob("/sys/kernel/mm/transparent_hugepage/defrag", "never", knobs);
    set_knob("/sys/kernel/mm/transparent_hugepage/enabled", "madvise", knobs);

    const auto free = node_free_bytes(node);
    if (free < 2 * reserve)
        throw memhp::Error("node " + std::to_string(node) + " has only " + memhp::format_size_human(free) + " free");
    const std::uint64_t size = (free - reserve) / kPage * kPage;
    auto* base = static_cast<unsigned char*>(map_anon(size));
    if (::madvise(base, size, MADV_NOHUGEPAGE) != 0)
        throw memhp::Error(memhp::errno_text("madvise(MADV_NOHUGEPAGE)", errno));
    for (std::uint64_t off = 0; off < size; off += kPage) base[off] = 1;

    // Frame numbers of the pages (root reads them from pagemap).
    const std::uint64_t pages = size / kPage;
    std::vector<std::uint64_t> map(pages);
    {
        int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
        if (fd < 0) throw memhp::Error(memhp::errno_text("open /proc/self/pagemap", errno));
        const auto want = static_cast<ssize_t>(pages * sizeof(std::uint64_t));
        const ssize_t got =
            ::pread(fd, map.data(), static_cast<std::size_t>(want),
                    static_cast<off_t>(reinterpret_cast<std::uintptr_t>(base) / kPage * sizeof(std::uint64_t)));
        const int err = errno;
        ::close(fd);
        if (got != want) throw memhp::Error(memhp::errno_text("read /proc/self/pagemap", got < 0 ? err : EIO));
    }
    std::uint64_t freed = 0, unknown = 0;
    for (std::uint64_t i = 0; i < pages; ++i) {
        const std::uint64_t e = map[i];
        const std::uint64_t pfn = e & ((std::uint64_t{1} << 55) - 1);
        if (!(e >> 63) || pfn == 0) {
            ++unknown;
            continue;
        }
        if (pfn & 1) {
            if (::madvise(base + i * kPage, kPage, MADV_DONTNEED) != 0)
                throw memhp::Error(memhp::errno_text("madvise(MADV_DONTNEED)", errno));
            ++freed;
        }
    }
    if (unknown == pages) throw memhp::Error("pagemap shows no frame numbers (not root?)");
    // Lock what is left without faulting the freed pages back in.
    if (::mlock2(base, size, MLOCK_ONFAULT) != 0) throw memhp::Error(memhp::errno_text("mlock2(MLOCK_ONFAULT)", errno));

    // Whatever high-order blocks stayed free (memory the fill never reached),
    // take with huge pages, 2 MiB at a time, until none is left.
    g_thp.size = std::uint64_t{1} << 30;
    auto* raw = static_cast<unsigned char*>(map_anon(g_thp.size + kHuge));
    g_thp.base = reinterpret_cast<unsigned char*>((reinterpret_cast<std::uintptr_t>(raw) + kHuge - 1) / kHuge * kHuge);
    if (::madvise(g_thp.base, g_thp.size, MADV_HUGEPAGE) != 0)
        throw memhp::Error(memhp::errno_text("madvise(MADV_HUGEPAGE) (transparent hugepages built in?)", errno));
    g_thp.pagemap = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (g_thp.pagemap < 0) throw memhp::Error(memhp::errno_text("open /proc/self/pagemap", errno));
    g_thp.node = node;
    take_high_order_blocks();
    return {{"filled_bytes", size},
            {"freed_bytes", freed * kPage},
            {"locked_bytes", size - freed * kPage + g_thp.touched},
            {"huge_page_area_bytes", g_thp.touched}};
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "memhp-hog: sets a lab guest's memory up for the memhp ab scenarios (pressure, fragment) and holds it "
        "until killed. Prints 'memhp-hog: ready {json}' when done."};
    app.require_subcommand(1);
    int node = 0;
    std::string margin_text = "16M", reserve_text = "48M";
    auto* p = app.add_subcommand("pressure", "lock node memory until its MemFree is down to --margin");
    p->add_option("--margin", margin_text, "MemFree to leave on the node")->capture_default_str();
    p->add_option("--node", node, "NUMA node")->capture_default_str();
    auto* f = app.add_subcommand("fragment", "leave the node with free memory but no free block of order >= 9");
    f->add_option("--node", node, "NUMA node")->capture_default_str();
    f->add_option("--reserve", reserve_text, "memory the 4 KiB fill leaves alone (the kernel's headroom)")
        ->capture_default_str();
    CLI11_PARSE(app, argc, argv);

    struct sigaction sa {};
    sa.sa_handler = [](int) { g_stop = 1; };
    ::sigaction(SIGTERM, &sa, nullptr);
    ::sigaction(SIGINT, &sa, nullptr);
    try {
        // The OOM killer's first choice (the agent and the tracer run at -1000).
        memhp::write_file("/proc/self/oom_score_adj", "1000");
        bind_to(node);
        json knobs = json::object();
        set_knob("/proc/sys/vm/drop_caches", "3", knobs);
        json r{{"node", node}};
        const auto t0 = std::chrono::steady_clock::now();
        if (p->parsed()) {
            const auto margin = memhp::parse_size(margin_text);
            r["mode"] = "pressure";
            r["margin_bytes"] = margin;
            r.update(pressure(node, margin));
        } else {
            r["mode"] = "fragment";
            r.update(fragment(node, memhp::parse_size(reserve_text), knobs));
        }
        r["setup_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        r["knobs"] = knobs;
        r["mem_free_bytes"] = node_free_bytes(node);
        r["watermarks"] = watermarks(node);
        r.update(buddy_report(node));
        r["pid"] = ::getpid();
        say("ready " + r.dump());
    } catch (const std::exception& e) {
        say(std::string("failed: ") + e.what());
        return 1;
    }
    while (!g_stop) {
        if (g_thp.base) {
            try {
                take_high_order_blocks();
            } catch (const std::exception& e) {
                say(std::string("warning: ") + e.what());
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        } else {
            ::pause();
        }
    }
    return 0;
}
