// SPDX-License-Identifier: Apache-2.0
// Results files are outside input (CI artifacts of other jobs and branches):
// the typed loader against hostile and broken documents, and the memhp
// report / compare binaries on them (exit 2, a message naming the field,
// never a crash, never a command run through gnuplot).
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <csignal>
#include <filesystem>

#include "memhp/ab/plots.hpp"
#include "memhp/ab/report.hpp"
#include "memhp/ab/results.hpp"
#include "memhp/files.hpp"
#include "memhp/process.hpp"

namespace memhp::ab {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

json good_arm(const std::string& name, int n = 6) {
    json cycles = json::array();
    for (int i = 0; i < n; ++i)
        cycles.push_back({{"index", i + 1},
                          {"round", i + 1},
                          {"ok", true},
                          {"metrics",
                           {{"probe_add_s", 0.01 + 0.001 * i},
                            {"probe_online_s", 0.02},
                            {"free_consumed_bytes", 2 << 20},
                            {"memmap_page_allocator_bytes", 2 << 20}}},
                          {"phases", json::array({{{"phase", "add"}, {"ok", true}}})}});
    return {
        {"name", name}, {"kernel_spec", "6.1"}, {"guest", {{"release", "6.1.0"}, {"boot_s", 3.0}}}, {"cycles", cycles}};
}

json good_doc() {
    return {{"schema", kResultsSchema},
            {"status", "complete"},
            {"options",
             {{"mode", "cycles"},
              {"dimm_bytes", 128u << 20},
              {"dimms", 1},
              {"node", 1},
              {"zone", "movable"},
              {"cycles", 6}}},
            {"arms", json::array({good_arm("page-alloc"), good_arm("altmap")})},
            {"errors", json::array()}};
}

// The loader's verdict on `doc`: "" when accepted, else the message.
std::string verdict(const std::string& text) {
    try {
        (void)parse_results(text, "r.json");
        return "";
    } catch (const BadResults& e) {
        return e.what();
    }
}
std::string verdict(const json& doc) { return verdict(doc.dump()); }

TEST(Results, AGoodDocumentBecomesTypedRecords) {
    const auto r = parse_results(good_doc().dump());
    ASSERT_EQ(r.arms.size(), 2u);
    EXPECT_EQ(r.arms[1].name, "altmap");
    ASSERT_EQ(r.arms[0].cycles.size(), 6u);
    EXPECT_TRUE(r.arms[0].cycles[2].ok);
    EXPECT_DOUBLE_EQ(r.arms[0].cycles[2].metrics.at("probe_add_s"), 0.012);
    EXPECT_EQ(r.arms[0].cycles[2].phases.at(0).phase, "add");
    EXPECT_EQ(r.options.dimm_bytes, 128u << 20);
    ASSERT_TRUE(r.arms[0].guest);
    EXPECT_EQ(r.arms[0].guest->release, "6.1.0");
    EXPECT_EQ(find_arm(r, "altmap"), &r.arms[1]);
    EXPECT_EQ(find_arm(r, "nope"), nullptr);
}

// Each case: a mutation of a good document and what the message must name.
struct Case {
    const char* what;
    std::function<void(json&)> mutate;
    const char* needle;
};

TEST(Results, MissingKeysAndWrongTypesNameTheField) {
    const std::vector<Case> cases = {
        {"no options", [](json& d) { d.erase("options"); }, "$: missing \"options\""},
        {"options not an object", [](json& d) { d["options"] = 3; }, "$.options: expected an object"},
        {"no dimm_bytes", [](json& d) { d["options"].erase("dimm_bytes"); }, "$.options: missing \"dimm_bytes\""},
        {"dimm_bytes a string", [](json& d) { d["options"]["dimm_bytes"] = "128M"; },
         "$.options.dimm_bytes: expected a non-negative integer"},
        {"negative node", [](json& d) { d["options"]["node"] = -1; }, "$.options.node: negative"},
        {"bad zone", [](json& d) { d["options"]["zone"] = "dma"; }, "$.options.zone: \"dma\" is not one of"},
        {"bad mode", [](json& d) { d["options"]["mode"] = nullptr; }, "$.options.mode: expected a string"},
        {"arms an object", [](json& d) { d["arms"] = json::object(); }, "$.arms: expected an array"},
        {"no arms", [](json& d) { d["arms"] = json::array(); }, "no arms"},
        {"arm without name", [](json& d) { d["arms"][1].erase("name"); }, "$.arms[1]: missing \"name\""},
        {"arm name a number", [](json& d) { d["arms"][0]["name"] = 7; }, "$.arms[0].name: expected a string"},
        {"arm without cycles", [](json& d) { d["arms"][0].erase("cycles"); }, "$.arms[0]: missing \"cycles\""},
        {"cycle a string", [](json& d) { d["arms"][0]["cycles"][3] = "x"; }, "$.arms[0].cycles[3]: expected an object"},
        {"ok a number", [](json& d) { d["arms"][0]["cycles"][0]["ok"] = 1; },
         "$.arms[0].cycles[0].ok: expected true or false"},
        {"metric a string", [](json& d) { d["arms"][1]["cycles"][2]["metrics"]["probe_add_s"] = "fast"; },
         "$.arms[1].cycles[2].metrics.probe_add_s: expected a number"},
        {"metrics an array", [](json& d) { d["arms"][1]["cycles"][2]["metrics"] = json::array(); },
         "$.arms[1].cycles[2].metrics: expected an object"},
        {"phase without name", [](json& d) { d["arms"][0]["cycles"][0]["phases"][0].erase("phase"); },
         "$.arms[0].cycles[0].phases[0]: missing \"phase\""},
        {"guest a string", [](json& d) { d["arms"][0]["guest"] = "qemu"; }, "$.arms[0].guest: expected an object"},
        {"boot_s negative", [](json& d) { d["arms"][0]["guest"]["boot_s"] = -3; },
         "$.arms[0].guest.boot_s: value -3 is out of range"},
        {"schema missing", [](json& d) { d.erase("schema"); }, "no \"schema\""},
        {"schema a number", [](json& d) { d["schema"] = 1; }, "is not supported"},
        {"newer schema", [](json& d) { d["schema"] = "memhp.ab/9"; }, "is not supported"},
        {"status unknown", [](json& d) { d["status"] = "great"; }, "$.status"},
        {"errors not strings", [](json& d) { d["errors"] = json::array({1}); }, "$.errors[0]: expected a string"},
        {"fallback error a number",
         [](json& d) {
             d["fallback_check"] = json::array({{{"guest", "a"}, {"error", 5}}});
         },
         "$.fallback_check[0].error: expected a string"},
        {"scale step without values",
         [](json& d) {
             d["arms"][0]["scale"] = json::array({{{"ok", true}}});
         },
         "$.arms[0].scale[0]: missing \"present_before_bytes\""},
        {"scenario errno a string",
         [](json& d) {
             d["arms"][0]["cycles"][0]["scenario"] = {{"adds", {{{"errno", "ENOMEM"}}}}};
         },
         "$.arms[0].cycles[0].scenario.adds[0].errno: expected an integer"},
        {"peer phases wrong",
         [](json& d) {
             d["arms"][0]["guest"]["peer"] = {{"tool", "bpftrace"}, {"attach_s", 1}, {"phases", {{"add", 1}}}};
         },
         "$.arms[0].guest.peer.phases.add: expected an object"},
        {"duplicate arm names", [](json& d) { d["arms"][1]["name"] = "page-alloc"; }, "two arms are named"},
    };
    for (const auto& c : cases) {
        json d = good_doc();
        c.mutate(d);
        const auto v = verdict(d);
        EXPECT_NE(v.find(c.needle), std::string::npos) << c.what << ": " << (v.empty() ? "accepted" : v);
        EXPECT_EQ(v.rfind("r.json: ", 0), 0u) << c.what << ": the message names the file: " << v;
    }
}

TEST(Results, HugeNumbersNaNAndInfinityAreRefused) {
    auto with_add = [](const std::string& number) {
        std::string t = good_doc().dump();
        const std::string key = "\"probe_add_s\":0.01,";
        t.replace(t.find(key), key.size(), "\"probe_add_s\":" + number + ",");
        return t;
    };
    EXPECT_NE(verdict(with_add("1e400")).find("not valid JSON"), std::string::npos) << verdict(with_add("1e400"));
    EXPECT_NE(verdict(with_add("NaN")).find("not valid JSON"), std::string::npos);
    EXPECT_NE(verdict(with_add("Infinity")).find("not valid JSON"), std::string::npos);
    EXPECT_NE(verdict(with_add("-1e308")).find(""), std::string::npos);  // finite: accepted as a number
    EXPECT_EQ(verdict(with_add("-1e308")), "");
    json d = good_doc();
    d["options"]["dimms"] = 18446744073709551615u;
    EXPECT_NE(verdict(d).find("$.options.dimms: value 18446744073709551615 is out of range"), std::string::npos)
        << verdict(d);
    d = good_doc();
    d["options"]["dimm_bytes"] = 1e30;
    EXPECT_NE(verdict(d).find("$.options.dimm_bytes: expected a non-negative integer"), std::string::npos)
        << verdict(d);
    d = good_doc();
    d["arms"][0]["cycles"][0]["scenario"] = {{"adds", {{{"errno", 99999999999LL}}}}};
    EXPECT_NE(verdict(d).find("errno: value 99999999999 is out of range"), std::string::npos) << verdict(d);
    // 100000000000000000000 does not fit 64 bits: nlohmann makes it a double.
    std::string t = good_doc().dump();
    t.replace(t.find("\"node\":1"), 8, "\"node\":100000000000000000000");
    EXPECT_NE(verdict(t).find("$.options.node: expected a non-negative integer"), std::string::npos) << verdict(t);
}

TEST(Results, DeepNestingIsRefusedWithoutRecursion) {
    // A million levels: the parser callback stops it at kMaxResultsDepth.
    std::string deep(1000000, '[');
    deep += std::string(1000000, ']');
    EXPECT_NE(verdict("{\"schema\":\"memhp.ab/1\",\"x\":" + deep + "}").find("nested deeper than"), std::string::npos);
    // Nesting where memhp keeps opaque records (ops) is bounded too.
    json d = good_doc();
    json nest = json::array();
    for (int i = 0; i < 100; ++i) nest = json::array({nest});
    d["arms"][0]["cycles"][0]["ops"] = json::array({{{"x", nest}}});
    EXPECT_NE(verdict(d).find("nested deeper than"), std::string::npos);
}

TEST(Results, InvalidUtf8AndHostileNamesAreRefused) {
    std::string t = good_doc().dump();
    t.replace(t.find("page-alloc"), 10, "page\xff\xfe");
    EXPECT_NE(verdict(t).find("not valid JSON"), std::string::npos) << verdict(t);
    for (const std::string& name : std::vector<std::string>{"a`touch /tmp/x`", "a\nsystem \"id\"", "x\" ; system \"id",
                                                            "", std::string(33, 'a'), "-lead", "a b", "a|b", "naïve"}) {
        json d = good_doc();
        d["arms"][0]["name"] = name;
        const auto v = verdict(d);
        EXPECT_NE(v.find("$.arms[0].name"), std::string::npos)
            << "name " << name << ": " << (v.empty() ? "accepted" : v);
    }
    for (const std::string& name : std::vector<std::string>{"a", "page-alloc", "v6.12_rc1", std::string(32, 'z')}) {
        json d = good_doc();
        d["arms"][0]["name"] = name;
        EXPECT_EQ(verdict(d), "") << name;
    }
    EXPECT_TRUE(valid_arm_name("altmap"));
    EXPECT_FALSE(valid_arm_name(".hidden"));
}

TEST(Results, BoundedReadRefusesOversizeFilesFifosAndDevices) {
    TempDir dir("memhp-results");
    const auto big = dir.path() / "big.json";
    {
        // Sparse: no disk needed for the size check.
        write_file(big, "{");
        fs::resize_file(big, kMaxResultsBytes + 1);
    }
    try {
        (void)load_results(big);
        ADD_FAILURE() << "an oversize file was accepted";
    } catch (const BadResults& e) {
        EXPECT_NE(std::string(e.what()).find("more than"), std::string::npos) << e.what();
    }
    const auto fifo = dir.path() / "fifo";
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    EXPECT_THROW((void)load_results(fifo), BadResults);  // no writer: must not block
    EXPECT_THROW((void)load_results("/dev/zero"), BadResults);
    EXPECT_THROW((void)load_results(dir.path()), BadResults);
    EXPECT_THROW((void)load_results(dir.path() / "missing.json"), BadResults);
    write_file(dir.path() / "ok.json", good_doc().dump());
    EXPECT_EQ(load_results(dir.path() / "ok.json").arms.size(), 2u);
}

TEST(Results, MarkdownCellsCannotBreakTheTable) {
    EXPECT_EQ(md_cell("a|b\nc\x01"), "a\\|b c?");
    json d = good_doc();
    d["arms"][0]["guest"]["release"] = "6.1 | injected\n| row |";
    d["errors"] = json::array({"line one\nline two"});
    const auto md = summary_markdown(parse_results(d.dump()), {});
    EXPECT_NE(md.find("6.1 \\| injected \\| row \\|"), std::string::npos) << md;
    EXPECT_NE(md.find("- line one\n  line two"), std::string::npos) << md;
}

// gnuplot must never see data as code: even a name that slipped past the
// loader (a Results built by hand) cannot run a command, and the plot renders.
TEST(Results, ArmNamesNeverRunCommandsInGnuplot) {
    TempDir dir("memhp-plots");
    const auto marker = dir.path() / "PWNED";
    Results r = parse_results(good_doc().dump());
    r.arms[0].name = "a`touch " + marker.string() + "`";
    r.arms[1].name = "b\"\nsystem \"touch " + marker.string() + "\"\n'";
    json plots;
    ASSERT_NO_THROW(plots = write_plots(r, dir.path() / "plots"));
    EXPECT_FALSE(fs::exists(marker)) << "gnuplot ran a command from an arm name";
    ASSERT_TRUE(plots.contains("latency")) << plots.dump();
    for (const auto& [name, path] : plots.items()) EXPECT_GT(fs::file_size(path.get<std::string>()), 1000u) << name;
    const auto svg = read_file(plots["latency"].get<std::string>());
    EXPECT_NE(svg.find("a`touch"), std::string::npos) << "the name is in the key, as text";
    for (const auto& e : fs::directory_iterator(dir.path() / "plots"))
        if (e.path().extension() == ".gp") {
            const auto gp = read_file(e.path());
            EXPECT_EQ(gp.find("touch"), std::string::npos) << e.path() << " holds data:\n" << gp;
            EXPECT_EQ(gp.find(dir.path().string()), std::string::npos) << e.path() << " holds a path:\n" << gp;
        }
    // The same through the loader: refused before gnuplot is started.
    json d = good_doc();
    d["arms"][0]["name"] = r.arms[0].name;
    EXPECT_THROW((void)write_plots(d, dir.path() / "plots2"), BadResults);
    EXPECT_FALSE(fs::exists(marker));
}

std::string memhp_bin() { return (fs::read_symlink("/proc/self/exe").parent_path() / "memhp").string(); }

TEST(Results, ReportAndCompareExitTwoOnMalformedFilesAndOneOnlyOnRegression) {
    TempDir dir("memhp-results");
    write_file(dir.path() / "good.json", good_doc().dump());
    json nameless = good_doc();
    nameless["arms"][0].erase("name");
    write_file(dir.path() / "nameless.json", nameless.dump());
    json noopts = good_doc();
    noopts.erase("options");
    write_file(dir.path() / "noopts.json", noopts.dump());
    json evil = good_doc();
    evil["arms"][0]["name"] = "x`touch " + (dir.path() / "PWNED").string() + "`";
    write_file(dir.path() / "evil.json", evil.dump());
    for (const char* bad : {"nameless.json", "noopts.json", "evil.json"}) {
        const auto p = (dir.path() / bad).string();
        auto r = run({memhp_bin(), "report", p, "--out", (dir.path() / "out").string()},
                     {.timeout = std::chrono::seconds(30)});
        EXPECT_EQ(r.exit_code, 2) << bad << r.err;
        EXPECT_NE(r.err.find(".json: $"), std::string::npos) << bad << ": the message names the field: " << r.err;
        r = run({memhp_bin(), "compare", (dir.path() / "good.json").string(), p},
                {.timeout = std::chrono::seconds(30)});
        EXPECT_EQ(r.exit_code, 2) << bad << r.err;
        r = run({memhp_bin(), "compare", p, (dir.path() / "good.json").string()},
                {.timeout = std::chrono::seconds(30)});
        EXPECT_EQ(r.exit_code, 2) << bad << r.err;
    }
    EXPECT_FALSE(fs::exists(dir.path() / "PWNED"));
    auto r = run({memhp_bin(), "report", (dir.path() / "good.json").string(), "--out", (dir.path() / "out").string()},
                 {.timeout = std::chrono::seconds(60)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(fs::exists(dir.path() / "out" / "summary.md"));
    r = run({memhp_bin(), "compare", "/dev/zero", (dir.path() / "good.json").string()},
            {.timeout = std::chrono::seconds(30)});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find("not a regular file"), std::string::npos) << r.err;
}

// What memhp trace lost reaches every sink of a run: the loader checks the
// counts, summary.md lists the arm, plain `memhp compare` says inconclusive
// (exit 3) whatever the figures, and a clean pair still compares 0. Before,
// only trace_dropped_events was kept, and only --gate looked at it.
TEST(Results, LostTraceEventsReachSummaryAndMakeCompareInconclusive) {
    TempDir dir("memhp-results");
    json lossy = good_doc();
    lossy["arms"][1]["guest"]["trace_orphan_page_events"] = 3;
    lossy["arms"][1]["guest"]["trace_stale_ops"] = 1;
    const auto typed = parse_results(lossy.dump());
    EXPECT_TRUE(typed.arms[0].guest->trace_losses.empty());
    EXPECT_EQ(typed.arms[1].guest->trace_losses,
              "memhp's tracer lost events: 3 orphan page events (their op never completed), 1 stale ops aged out "
              "(their exit never came)");
    for (const char* key :
         {"trace_stale_ops", "trace_orphan_page_events", "trace_untraced_ops", "trace_decode_errors"}) {
        json bad = good_doc();
        bad["arms"][0]["guest"][key] = -1;
        EXPECT_NE(verdict(bad).find(std::string("$.arms[0].guest.") + key), std::string::npos) << verdict(bad);
    }
    json bad = good_doc();
    bad["arms"][0]["guest"]["trace_summary_missing"] = "yes";
    EXPECT_NE(verdict(bad).find("trace_summary_missing"), std::string::npos) << verdict(bad);

    const std::string md = summary_markdown(typed, CompareOptions{});
    EXPECT_NE(md.find("### Lost events"), std::string::npos) << md;
    EXPECT_NE(md.find("- altmap: memhp's tracer lost events: 3 orphan page events"), std::string::npos) << md;
    EXPECT_EQ(summary_markdown(parse_results(good_doc().dump()), CompareOptions{}).find("Lost events"),
              std::string::npos);

    write_file(dir.path() / "good.json", good_doc().dump());
    write_file(dir.path() / "lossy.json", lossy.dump());
    auto r = run({memhp_bin(), "compare", (dir.path() / "good.json").string(), (dir.path() / "good.json").string()},
                 {.timeout = std::chrono::seconds(30)});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    for (const auto& [b, c] : {std::pair{"good.json", "lossy.json"}, std::pair{"lossy.json", "good.json"}}) {
        r = run({memhp_bin(), "compare", (dir.path() / b).string(), (dir.path() / c).string()},
                {.timeout = std::chrono::seconds(30)});
        EXPECT_EQ(r.exit_code, 3) << b << " " << c << r.out << r.err;
        EXPECT_NE(r.out.find("**Inconclusive**"), std::string::npos) << r.out;
        EXPECT_NE(r.err.find("arm 'altmap': memhp's tracer lost events: 3 orphan page events"), std::string::npos)
            << r.err;
    }
    // memhp report writes the section too.
    r = run({memhp_bin(), "report", (dir.path() / "lossy.json").string(), "--no-plots", "--out",
             (dir.path() / "out").string()},
            {.timeout = std::chrono::seconds(30)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(read_file(dir.path() / "out" / "summary.md").find("### Lost events"), std::string::npos);
}

// A full disk (a 16 KiB tmpfs in a private mount namespace) is a clear error
// naming the file, and leaves neither a partial summary.md nor a temporary.
TEST(Results, ReportOnAFullDiskSaysSoAndLeavesNothingHalfWritten) {
    ASSERT_TRUE(find_program("unshare")) << "unshare (util-linux) missing";
    TempDir dir("memhp-results");
    json d = good_doc();
    d["errors"] = json::array({std::string(30000, 'e')});  // a summary larger than the disk
    write_file(dir.path() / "r.json", d.dump());
    const auto disk = dir.path() / "disk";
    fs::create_directories(disk);
    const std::string script = "mount -t tmpfs -o size=16k tmpfs '" + disk.string() + "' && '" + memhp_bin() +
                               "' report '" + (dir.path() / "r.json").string() + "' --no-plots --out '" +
                               (disk / "out").string() + "'; s=$?; ls -A '" + (disk / "out").string() + "'; exit $s";
    auto r = run({"unshare", "--mount", "--map-root-user", "sh", "-c", script}, {.timeout = std::chrono::seconds(30)});
    ASSERT_EQ(r.err.find("unshare failed"), std::string::npos) << "no user namespaces here: " << r.err;
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_NE(r.err.find("cannot write " + (disk / "out" / "summary.md").string() + ": No space left on device"),
              std::string::npos)
        << r.err;
    EXPECT_EQ(r.out.find("summary.md"), std::string::npos) << "left behind: " << r.out;
}

}  // namespace
}  // namespace memhp::ab
