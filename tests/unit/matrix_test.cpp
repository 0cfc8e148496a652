// SPDX-License-Identifier: Apache-2.0
// memhp ab's devices and matrix without guests: device= parsing and its
// refusals, the matrix planner's cells and skip reasons, a cell's row and
// the table from crafted cycle records, and the CLI refusing bad matrices
// before any boot.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "memhp/ab/device.hpp"
#include "memhp/ab/matrix.hpp"
#include "memhp/ab/runner.hpp"
#include "memhp/files.hpp"
#include "memhp/process.hpp"

namespace memhp::ab {
namespace {

using nlohmann::json;

TEST(AbDevice, ParsesTheThreeDevicesAndRefusesOthers) {
    EXPECT_EQ(parse_device("dimm"), DeviceKind::Dimm);
    EXPECT_EQ(parse_device("virtio-mem"), DeviceKind::VirtioMem);
    EXPECT_EQ(parse_device("dax"), DeviceKind::Dax);
    EXPECT_THROW((void)parse_device("virtio_mem"), UsageError);
    EXPECT_THROW((void)parse_device(""), UsageError);
    for (auto d : {DeviceKind::Dimm, DeviceKind::VirtioMem, DeviceKind::Dax})
        EXPECT_EQ(parse_device(device_name(d)), d);
}

TEST(AbDevice, ArmKeyDeviceAndItsRefusals) {
    const lab::GuestConfig base;
    EXPECT_EQ(parse_arm("a", base).device, DeviceKind::Dimm) << "DIMMs unless asked";
    EXPECT_EQ(parse_arm("v:device=virtio-mem,mmo=on", base).device, DeviceKind::VirtioMem);
    EXPECT_EQ(parse_arm("d:device=dimm", base).device, DeviceKind::Dimm);
    try {
        (void)parse_arm("x:device=floppy", base);
        ADD_FAILURE() << "device=floppy accepted";
    } catch (const UsageError& e) {
        EXPECT_NE(std::string(e.what()).find("dimm, virtio-mem and dax"), std::string::npos) << e.what();
    }
    EXPECT_EQ(parse_arm("x:device=dax,mmo=on", base).device, DeviceKind::Dax);
    // virtio-mem runs the cycle rounds only.
    AbConfig c;
    c.arms = {parse_arm("v:device=virtio-mem", base)};
    c.out = "out";
    EXPECT_NO_THROW(validate(c));
    c.scale = true;
    EXPECT_THROW(validate(c), UsageError);
    c.scale = false;
    c.scenario = Scenario::Fragmented;
    EXPECT_THROW(validate(c), UsageError);
    // dax's pmem range is node 1.
    c.scenario = Scenario::None;
    c.arms = {parse_arm("d:device=dax", base)};
    EXPECT_NO_THROW(validate(c));
    c.node = 0;
    EXPECT_THROW(validate(c), UsageError);
}

TEST(AbDevice, VirtioMemAddsOneDeviceSizedForTheCycleOnTheNode) {
    lab::GuestConfig g;
    make_device(DeviceKind::VirtioMem)->configure(g, std::uint64_t{1} << 30, 1);
    ASSERT_EQ(g.virtio_mem.size(), 1u);
    EXPECT_EQ(g.virtio_mem[0].node, 1);
    EXPECT_EQ(g.virtio_mem[0].max_size, std::uint64_t{1} << 30);
    lab::GuestConfig d;
    make_device(DeviceKind::Dimm)->configure(d, std::uint64_t{1} << 30, 1);
    EXPECT_TRUE(d.virtio_mem.empty());
    // The probes see one add per DIMM but one per block for virtio-mem.
    lab::CycleRecord c;
    lab::Dimm m;
    m.blocks = {32, 33, 34, 35};
    c.dimms = {m};
    EXPECT_EQ(make_device(DeviceKind::Dimm)->ops_per_cycle(c), 1u);
    EXPECT_EQ(make_device(DeviceKind::VirtioMem)->ops_per_cycle(c), 4u);
    lab::GuestConfig x;
    make_device(DeviceKind::Dax)->configure(x, std::uint64_t{128} << 20, 1);
    EXPECT_EQ(x.node_mem.size(), 2u) << "node 1 is the pmem range";
    ASSERT_FALSE(x.append.empty());
    EXPECT_EQ(x.append.back().rfind("memmap=", 0), 0u) << x.append.back();
    EXPECT_FALSE(device_memmap_note(DeviceKind::Dax).empty());
    EXPECT_FALSE(device_memmap_note(DeviceKind::VirtioMem).empty());
    EXPECT_TRUE(device_memmap_note(DeviceKind::Dimm).empty());
}

TEST(AbMatrix, KernelSeriesKnownBeforeBoot) {
    using V = std::optional<std::pair<int, int>>;
    EXPECT_EQ(kernel_series_version("5.10"), V({5, 10}));
    EXPECT_EQ(kernel_series_version("default"), V({6, 1}));
    EXPECT_EQ(kernel_series_version("latest"), V({7, 2}));
    EXPECT_EQ(kernel_series_version("patched-7.2"), V({7, 2}));
    EXPECT_EQ(kernel_series_version("linux-image-5.10.0-32-amd64-unsigned"), V({5, 10}));
    EXPECT_EQ(kernel_series_version("linux-image-7.2.13+deb14-amd64"), V({7, 2}));
    EXPECT_EQ(kernel_series_version("/tmp/bzImage"), std::nullopt);
}

std::map<std::string, std::string> skips(const std::vector<MatrixCell>& cells) {
    std::map<std::string, std::string> m;
    for (const auto& c : cells) m[c.name] = c.skip;
    return m;
}

TEST(AbMatrix, PlansEveryCellInOrderWithTheSkipReasons) {
    const auto cells = plan_matrix({"5.10", "6.1", "6.12", "7.2"},
                                   {DeviceKind::Dimm, DeviceKind::VirtioMem, DeviceKind::Dax}, {"on", "off"});
    ASSERT_EQ(cells.size(), 4u * 3u * 2u);
    EXPECT_EQ(cells[0].name, "k5.10-dimm-on");
    EXPECT_EQ(cells[1].name, "k5.10-dimm-off");
    EXPECT_EQ(cells[2].name, "k5.10-virtio-mem-on");
    EXPECT_EQ(cells.back().name, "k7.2-dax-off");
    const auto s = skips(cells);
    // 5.10: no memmap_on_memory at all.
    EXPECT_NE(s.at("k5.10-dimm-on").find("no memmap_on_memory at all (it arrived in Linux 5.12)"), std::string::npos);
    EXPECT_EQ(s.at("k5.10-dimm-off"), "");
    // virtio-mem: once per kernel, with mmo=on where there is one, off on 5.10.
    EXPECT_NE(s.at("k5.10-virtio-mem-on").find("5.12"), std::string::npos);
    EXPECT_EQ(s.at("k5.10-virtio-mem-off"), "");
    for (const char* k : {"6.1", "6.12", "7.2"}) {
        EXPECT_EQ(s.at(std::string("k") + k + "-dimm-on"), "") << k;
        EXPECT_EQ(s.at(std::string("k") + k + "-dimm-off"), "") << k;
        EXPECT_EQ(s.at(std::string("k") + k + "-virtio-mem-on"), "") << k;
        EXPECT_NE(s.at(std::string("k") + k + "-virtio-mem-off").find("not a different cell"), std::string::npos) << k;
        EXPECT_EQ(s.at(std::string("k") + k + "-dax-off"), "") << k;
    }
    // dax: the memmap_on_memory attribute only from 6.8.
    EXPECT_NE(s.at("k6.1-dax-on").find("no dax memmap_on_memory attribute (it arrived in Linux 6.8)"),
              std::string::npos);
    EXPECT_EQ(s.at("k6.12-dax-on"), "");
    EXPECT_EQ(s.at("k7.2-dax-on"), "");
    EXPECT_NE(s.at("k5.10-dax-on").find("5.12"), std::string::npos);
    EXPECT_EQ(s.at("k5.10-dax-off"), "");
    int run = 0;
    for (const auto& c : cells) run += c.skip.empty();
    EXPECT_EQ(run, 3 + 4 + 5 + 5);  // 5.10, 6.1, 6.12, 7.2
}

TEST(AbMatrix, VirtioMemWithOnlyOffRunsOff) {
    const auto s = skips(plan_matrix({"6.12"}, {DeviceKind::VirtioMem}, {"off"}));
    EXPECT_EQ(s.at("k6.12-virtio-mem-off"), "");
    const auto t = skips(plan_matrix({"6.12"}, {DeviceKind::VirtioMem}, {"off", "on"}));
    EXPECT_EQ(t.at("k6.12-virtio-mem-on"), "") << "mmo=on is the cell that runs, whatever the order";
    EXPECT_NE(t.at("k6.12-virtio-mem-off").find("mmo=on"), std::string::npos);
}

TEST(AbMatrix, RefusesBadListsBeforeAnyBoot) {
    EXPECT_THROW((void)plan_matrix({}, {DeviceKind::Dimm}, {"on"}), UsageError);
    EXPECT_THROW((void)plan_matrix({"6.1"}, {}, {"on"}), UsageError);
    EXPECT_THROW((void)plan_matrix({"6.1"}, {DeviceKind::Dimm}, {}), UsageError);
    EXPECT_THROW((void)plan_matrix({"6.1"}, {DeviceKind::Dimm}, {"maybe"}), UsageError);
    EXPECT_THROW((void)plan_matrix({"banana"}, {DeviceKind::Dimm}, {"on"}), UsageError);
    // A file's kernel is not known before boot: nothing skipped for it.
    const auto cells = plan_matrix({"/nonexistent/bzImage"}, {DeviceKind::Dimm}, {"on"});
    ASSERT_EQ(cells.size(), 1u);
    EXPECT_EQ(cells[0].skip, "");
    EXPECT_LE(cells[0].name.size(), 32u);
}

json cycle(double alt_bytes, double buddy_bytes, double remote, double free_b, double add_s, bool ok = true) {
    return {{"ok", ok},
            {"metrics",
             {{"memmap_altmap_bytes", alt_bytes},
              {"memmap_page_allocator_bytes", buddy_bytes},
              {"memmap_remote_bytes", remote},
              {"free_consumed_bytes", free_b},
              {"probe_add_s", add_s},
              {"probe_online_s", 0.004},
              {"wall_offline_s", 0.050},
              {"probe_remove_s", 0.016}}}};
}

TEST(AbMatrix, RowFromACellRunAndTheTable) {
    const std::uint64_t gib = std::uint64_t{1} << 30;
    MatrixCell vm{"6.12", DeviceKind::VirtioMem, "on", "k6.12-virtio-mem-on", ""};
    const double memmap = 4096.0 * 4096;  // 1 GiB: 8 blocks x 512 pages
    json run{{"status", "complete"},
             {"errors", json::array()},
             {"arms",
              {{{"guest", {{"release", "6.12.74+deb13-amd64"}, {"probes", "memhp: attached 23 of 23 probes"}}},
                {"cycles", {cycle(0, memmap, memmap, 17 << 20, 0.080), cycle(0, memmap, memmap, 16 << 20, 0.160)}}}}}};
    const auto row = matrix_row(vm, run, gib);
    EXPECT_EQ(row["status"], "ok");
    EXPECT_EQ(row["memmap_source"], "page allocator");
    EXPECT_EQ(row["memmap_locality"], "remote");
    EXPECT_DOUBLE_EQ(row["memmap_page_allocator_pages"].get<double>(), 4096);
    EXPECT_DOUBLE_EQ(row["memmap_altmap_pages"].get<double>(), 0);
    EXPECT_DOUBLE_EQ(row["free_consumed_per_gib_bytes"].get<double>(), 16.5 * (1 << 20));
    EXPECT_DOUBLE_EQ(row["add_s_per_block"].get<double>(), 0.120 / 8);
    EXPECT_EQ(row["offline_timed_by"], "wall");
    EXPECT_TRUE(row.contains("note"));

    MatrixCell d{"6.12", DeviceKind::Dimm, "on", "k6.12-dimm-on", ""};
    json bad = run;
    json failed = cycle(0, 0, 0, 0, 0, false);
    failed["phases"] = {{{"phase", "add"}, {"ok", true}}, {{"phase", "offline"}, {"ok", false}, {"error", "EBUSY"}}};
    bad["arms"][0]["cycles"] = {cycle(512 * 4096, 0, 0, 0, 0.010), failed};
    const auto brow = matrix_row(d, bad, std::uint64_t{128} << 20);
    EXPECT_EQ(brow["status"], "failed");
    EXPECT_EQ(brow["memmap_source"], "altmap") << "from the cycle that passed";
    EXPECT_EQ(brow["memmap_locality"], "local");

    MatrixCell s{"5.10", DeviceKind::Dimm, "on", "k5.10-dimm-on", "no memmap_on_memory | at all"};
    const auto srow = matrix_row(s, json::object(), gib);
    EXPECT_EQ(srow["status"], "skipped");

    const json pending{{"cell", "k7.2-dimm-on"}, {"kernel", "7.2"},
                       {"device", "dimm"},       {"mmo", "on"},
                       {"status", "not run"},    {"reason", "the matrix was interrupted before this cell"}};
    json m{{"options", {{"cycles", 2}, {"cycle_bytes", gib}, {"node", 1}}},
           {"cells", {row, brow, srow, pending}},
           {"wall_s", 42.0}};
    const auto md = matrix_markdown(m);
    EXPECT_NE(md.find("| 6.12 (6.12.74+deb13-amd64) | virtio-mem | on | ok | page allocator ¹ | remote | 0 | 4096 | "
                      "16.5 MiB | 15.0 |"),
              std::string::npos)
        << md;
    EXPECT_NE(md.find("| failed: 1 of 2 cycles failed (offline: EBUSY) |"), std::string::npos) << md;
    EXPECT_NE(md.find("skipped: no memmap_on_memory \\| at all"), std::string::npos) << "cells are escaped:\n" << md;
    EXPECT_NE(md.find("50.0 (wall)"), std::string::npos) << md;
    EXPECT_NE(md.find("¹ virtio-mem never passes MHP_MEMMAP_ON_MEMORY"), std::string::npos) << md;
    EXPECT_NE(md.find("wall time: 42 s"), std::string::npos) << md;
    EXPECT_NE(md.find("| 7.2 | dimm | on | not run: the matrix was interrupted before this cell | | |"),
              std::string::npos)
        << md;
}

TEST(AbMatrix, AFailedCellsReasonLeavesTheConsoleDumpInItsLog) {
    const std::string err =
        "k7.2: the guest kernel panicked while booting (Attempted to kill init!)\n"
        "--- last console lines (/tmp/run/console.log) ---\n[    1.0] Kernel panic - not syncing\n[    1.1] ---[ end "
        "]---\n";
    EXPECT_EQ(
        cell_reason(err),
        "k7.2: the guest kernel panicked while booting (Attempted to kill init!) (console: /tmp/run/console.log)");
    EXPECT_EQ(cell_reason("first\nsecond\tthird\n"), "first; second third");
    const std::string lng = std::string(398, 'x') + "\xc3\xa9\xc3\xa9 and more";
    const auto r = cell_reason(lng);
    EXPECT_EQ(r, std::string(398, 'x') + "\xc3\xa9...") << "cut at 400 bytes on a character boundary";
    MatrixCell d{"7.2", DeviceKind::Dimm, "on", "k7.2-dimm-on", ""};
    json run{{"status", "failed"}, {"errors", {err}}, {"arms", json::array()}};
    const auto row = matrix_row(d, run, std::uint64_t{128} << 20);
    EXPECT_EQ(row["status"], "failed");
    EXPECT_EQ(row["reason"].get<std::string>().find("Kernel panic - not syncing"), std::string::npos) << row.dump();
}

std::string memhp_bin() { return (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "memhp").string(); }
RunResult memhp_run(std::vector<std::string> args) {
    args.insert(args.begin(), memhp_bin());
    return run(args, {.timeout = std::chrono::seconds(20)});
}

TEST(AbMatrixCli, RefusesBadMatricesAndDaxBeforeAnyBoot) {
    TempDir dir("memhp-matrix-cli");
    auto r = memhp_run({"ab", "--matrix", "--devices", "dimm,floppy", "--out", (dir.path() / "o").string()});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find("floppy"), std::string::npos) << r.err;
    r = memhp_run({"ab", "--matrix", "--kernels", "banana", "--out", (dir.path() / "o").string()});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    r = memhp_run({"ab", "--matrix", "--scale", "--out", (dir.path() / "o").string()});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find("does not take --scale"), std::string::npos) << r.err;
    r = memhp_run({"ab", "--arm", "x:device=dax", "--node", "0", "--qemu", "/nonexistent"});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find("device=dax puts its pmem range on node 1"), std::string::npos) << r.err;
    // Only skipped cells: nothing boots, the table still says why.
    r = memhp_run({"ab", "--matrix", "--kernels", "5.10", "--devices", "dimm,dax", "--mmo", "on", "--no-plots", "--out",
                   (dir.path() / "m").string()});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const auto md = read_file(dir.path() / "m" / "summary.md");
    EXPECT_NE(md.find("| 5.10 | dimm | on | skipped: Linux 5.10 has no memmap_on_memory at all"), std::string::npos)
        << md;
    EXPECT_NE(md.find("| 5.10 | dax | on | skipped: Linux 5.10 has no memmap_on_memory at all"), std::string::npos)
        << md;
    const auto j = json::parse(read_file(dir.path() / "m" / "results.json"));
    EXPECT_EQ(j["schema"], kMatrixSchema);
    EXPECT_EQ(j["status"], "complete");
    EXPECT_EQ(j["cells"].size(), 2u);
}

TEST(AbMatrixCli, HelpExplainsTheMatrixFlags) {
    auto r = memhp_run({"ab", "--help"});
    EXPECT_EQ(r.exit_code, 0);
    for (const char* flag : {"--matrix", "--kernels", "--devices", "--mmo", "--size", "device (dimm"})
        EXPECT_NE(r.out.find(flag), std::string::npos) << flag;
}

}  // namespace
}  // namespace memhp::ab
