// SPDX-License-Identifier: Apache-2.0
#include "memhp/ab/matrix.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "memhp/ab/plots.hpp"
#include "memhp/ab/report.hpp"
#include "memhp/ab/stats.hpp"
#include "memhp/error.hpp"
#include "memhp/files.hpp"
#include "memhp/lab/kernel_cache.hpp"
#include "memhp/size.hpp"
#include "memhp/stop.hpp"
#include "memhp/version.hpp"

namespace memhp::ab {

using nlohmann::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::optional<std::pair<int, int>> kernel_series_version(std::string_view spec_in) {
    std::string spec(spec_in);
    if (spec == "default") spec = "6.1";
    if (spec == "latest") spec = "7.2";
    for (const char* prefix : {"patched-", "unpatched-"})
        if (spec.rfind(prefix, 0) == 0) spec = spec.substr(std::string(prefix).size());
    if (spec == "patched") spec = "6.1";
    std::smatch m;
    static const std::regex series(R"(^(\d{1,2})\.(\d{1,3})$)");
    static const std::regex package(R"(^linux-image-(\d{1,2})\.(\d{1,3})[.+-].*$)");
    if (std::regex_match(spec, m, series) || std::regex_match(spec, m, package))
        return std::make_pair(std::stoi(m[1].str()), std::stoi(m[2].str()));
    return std::nullopt;
}

namespace {

bool before(const std::optional<std::pair<int, int>>& v, int major, int minor) {
    return v && (v->first < major || (v->first == major && v->second < minor));
}

std::string series_text(const std::string& spec, const std::optional<std::pair<int, int>>& v) {
    if (!v) return spec;
    return "Linux " + std::to_string(v->first) + "." + std::to_string(v->second) +
           (spec == std::to_string(v->first) + "." + std::to_string(v->second) ? "" : " (" + spec + ")");
}

// An arm name from the cell (the --arm rule: letters, digits, '.', '_', '-', at most 32).
std::string cell_name(const std::string& kernel, DeviceKind d, const std::string& mmo) {
    std::string k;
    for (char c : kernel)
        k += std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' ? c : '_';
    std::string tail = std::string("-") + device_name(d) + "-" + mmo;
    if (k.size() + 1 + tail.size() > 32) k = k.substr(0, 32 - 1 - tail.size());
    return "k" + k + tail;
}

}  // namespace

std::vector<MatrixCell> plan_matrix(const std::vector<std::string>& kernels, const std::vector<DeviceKind>& devices,
                                    const std::vector<std::string>& mmos) {
    if (kernels.empty()) throw UsageError("--kernels: no kernel given");
    if (devices.empty()) throw UsageError("--devices: no device given");
    if (mmos.empty()) throw UsageError("--mmo: no memmap_on_memory mode given");
    for (const auto& m : mmos)
        if (m != "on" && m != "off" && m != "default")
            throw UsageError("--mmo " + m + ": the memmap_on_memory modes are on, off and default");
    for (const auto& k : kernels) (void)lab::classify_kernel_spec(k);  // UsageError naming the choices
    std::vector<MatrixCell> cells;
    for (const auto& k : kernels) {
        const auto v = kernel_series_version(k);
        const bool has_mmo = !before(v, 5, 12);
        for (const auto d : devices) {
            // virtio-mem runs once per kernel: with mmo=on where the kernel
            // has it (the mode a reader would expect to change something),
            // else in the first mode asked that the kernel can boot.
            std::string virtio_mode;
            if (d == DeviceKind::VirtioMem) {
                if (has_mmo && std::find(mmos.begin(), mmos.end(), "on") != mmos.end())
                    virtio_mode = "on";
                else
                    for (const auto& m : mmos)
                        if (m != "on" || has_mmo) {
                            virtio_mode = m;
                            break;
                        }
            }
            for (const auto& m : mmos) {
                MatrixCell c{k, d, m, cell_name(k, d, m), {}};
                if (auto why = device_unavailable(d))
                    c.skip = *why;
                else if (m == "on" && !has_mmo)
                    c.skip = series_text(k, v) + " has no memmap_on_memory at all (it arrived in Linux 5.12)";
                else if (d == DeviceKind::VirtioMem && before(v, 5, 8))
                    c.skip = series_text(k, v) + " has no virtio-mem (it arrived in Linux 5.8)";
                else if (d == DeviceKind::VirtioMem && m != virtio_mode)
                    c.skip =
                        "not a different cell: virtio-mem never passes MHP_MEMMAP_ON_MEMORY, so its memmap comes "
                        "from the page allocator in every mode; run once, with mmo=" +
                        virtio_mode;
                else if (d == DeviceKind::Dax && m == "on" && before(v, 6, 8))
                    c.skip = series_text(k, v) + " has no dax memmap_on_memory attribute (it arrived in Linux 6.8)";
                cells.push_back(std::move(c));
            }
        }
    }
    return cells;
}

namespace {

std::optional<double> median_metric(const json& cycles, const std::string& key) {
    std::vector<double> v;
    for (const auto& c : cycles) {
        if (!c.is_object() || !c.value("ok", false)) continue;
        const auto m = c.find("metrics");
        if (m == c.end() || !m->is_object()) continue;
        const auto x = m->find(key);
        if (x != m->end() && x->is_number()) v.push_back(x->get<double>());
    }
    if (v.empty()) return std::nullopt;
    return summarize(v).median;
}

std::string run_errors(const json& r) {
    std::string out;
    for (const auto& e : r.value("errors", json::array()))
        if (e.is_string()) out += (out.empty() ? "" : "; ") + e.get<std::string>();
    return out;
}

}  // namespace

std::string cell_reason(const std::string& error) {
    constexpr std::string_view kDump = "\n--- last console lines (";
    std::string head = error;
    std::string log;
    if (const auto at = error.find(kDump); at != std::string::npos) {
        head = error.substr(0, at);
        const auto from = at + kDump.size();
        if (const auto close = error.find(") ---", from); close != std::string::npos)
            log = error.substr(from, close - from);
    }
    std::string out;
    for (const char c : head) {  // one line: newlines (and other controls) become "; " / " "
        if (c == '\n') {
            if (!out.empty() && out.back() != ' ') out += "; ";
        } else {
            out += static_cast<unsigned char>(c) < 0x20 ? ' ' : c;
        }
    }
    while (!out.empty() && (out.back() == ' ' || out.back() == ';')) out.pop_back();
    constexpr std::size_t kMax = 400;
    if (out.size() > kMax) {
        // Cut on a character boundary: drop the last UTF-8 sequence only if the cut left it incomplete.
        std::size_t lead = kMax;
        while (lead > 0 && (static_cast<unsigned char>(out[lead - 1]) & 0xC0) == 0x80) --lead;
        std::size_t keep = kMax;
        if (lead > 0) {
            const auto b = static_cast<unsigned char>(out[lead - 1]);
            const std::size_t len = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
            if (lead - 1 + len > kMax) keep = lead - 1;
        }
        out.resize(keep);
        out += "...";
    }
    if (!log.empty() && log.size() < 512) out += " (console: " + log + ")";
    return out;
}

json matrix_row(const MatrixCell& cell, const json& run, std::uint64_t cycle_bytes) {
    json row{{"cell", cell.name}, {"kernel", cell.kernel}, {"device", device_name(cell.device)}, {"mmo", cell.mmo}};
    if (!cell.skip.empty()) {
        row["status"] = "skipped";
        row["reason"] = cell.skip;
        return row;
    }
    const json arm =
        run.contains("arms") && run["arms"].is_array() && !run["arms"].empty() ? run["arms"][0] : json::object();
    const json cycles = arm.value("cycles", json::array());
    int ok = 0, bad = 0;
    for (const auto& c : cycles) (c.is_object() && c.value("ok", false) ? ok : bad)++;
    row["cycles_ok"] = ok;
    row["cycles_failed"] = bad;
    if (arm.contains("guest") && arm["guest"].is_object()) {
        const auto& g = arm["guest"];
        row["release"] = g.value("release", "");
        row["memmap_on_memory_param"] = g.value("memmap_on_memory", "");
        row["probes"] = probes_cell(g.value("probes", ""));
        row["boot_s"] = g.value("boot_s", 0.0);
    }
    const double blocks = static_cast<double>(cycle_bytes) / double(std::uint64_t{128} << 20);
    row["blocks_per_cycle"] = blocks;
    const auto alt = median_metric(cycles, "memmap_altmap_bytes");
    const auto buddy = median_metric(cycles, "memmap_page_allocator_bytes");
    const auto remote = median_metric(cycles, "memmap_remote_bytes");
    const auto free_b = median_metric(cycles, "free_consumed_bytes");
    if (alt || buddy) {
        const double a = alt.value_or(0), b = buddy.value_or(0), r = remote.value_or(0);
        row["memmap_altmap_pages"] = a / 4096;
        row["memmap_page_allocator_pages"] = b / 4096;
        row["memmap_remote_pages"] = r / 4096;
        row["memmap_source"] = a > 0 && b == 0   ? "altmap"
                               : b > 0 && a == 0 ? "page allocator"
                               : a > 0           ? "mixed"
                                                 : "none";
        row["memmap_locality"] = a + b == 0 ? "–" : r == 0 ? "local" : r >= a + b ? "remote" : "partly remote";
    }
    if (free_b && cycle_bytes)
        row["free_consumed_per_gib_bytes"] = *free_b * double(std::uint64_t{1} << 30) / double(cycle_bytes);
    for (const char* phase : {"add", "online", "offline", "remove"}) {
        auto v = median_metric(cycles, std::string("probe_") + phase + "_s");
        std::string src = "probe";
        if (!v) {
            v = median_metric(cycles, std::string("wall_") + phase + "_s");
            src = "wall";
        }
        if (v && blocks > 0) {
            row[std::string(phase) + "_s_per_block"] = *v / blocks;
            row[std::string(phase) + "_timed_by"] = src;
        }
    }
    const std::string errors = run_errors(run);
    if (run.value("status", "") == "complete" && ok > 0 && bad == 0 && errors.empty()) {
        row["status"] = "ok";
    } else {
        row["status"] = "failed";
        std::string first;  // the first failed phase, in the guest's words
        for (const auto& c : cycles)
            for (const auto& p : c.value("phases", json::array()))
                if (first.empty() && p.is_object() && !p.value("ok", true))
                    first = p.value("phase", "?") + ": " + p.value("error", std::string("?")).substr(0, 300);
        row["reason"] = !errors.empty()
                            ? cell_reason(errors)
                            : (ok == 0 ? std::string("no cycle completed")
                                       : std::to_string(bad) + " of " + std::to_string(ok + bad) + " cycles failed") +
                                  (first.empty() ? "" : " (" + first + ")");
    }
    if (!device_memmap_note(cell.device).empty()) row["note"] = device_memmap_note(cell.device);
    return row;
}

namespace {

std::string num(const json& row, const char* key, double scale, const char* fmt) {
    if (!row.contains(key) || !row[key].is_number()) return "–";
    char b[48];
    std::snprintf(b, sizeof b, fmt, row[key].get<double>() * scale);
    return b;
}

std::string text(const json& row, const char* key) {
    return row.contains(key) && row[key].is_string() ? md_cell(row[key].get<std::string>()) : "–";
}

}  // namespace

std::string matrix_markdown(const json& matrix) {
    std::ostringstream md;
    const auto& o = matrix.value("options", json::object());
    md << "## memhp ab --matrix\n\n"
       << "Each cell boots one guest and runs " << o.value("cycles", 0) << " cycle(s) of "
       << format_size_human(o.value("cycle_bytes", std::uint64_t{0})) << " hot-added on node " << o.value("node", 1)
       << " (memoryless), onlined ("
       << (o.value("online", "") == "manual" ? "by the lab, " + md_cell(o.value("zone", "movable"))
                                             : std::string("by the kernel"))
       << "), offlined and removed. Latencies are medians per 128 MiB block (memhp's probes; "
          "`wall` marks the host's wall time where the probes had none); memmap pages are per cycle; "
          "free memory consumed is per GiB hot-added.\n\n"
       << "| kernel | device | mmo | status | memmap source | locality | altmap pages | page-alloc pages | "
          "free used / GiB | add ms | online ms | offline ms | remove ms |\n"
       << "|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n";
    std::map<std::string, std::string> footnotes;  // ¹ virtio-mem, ² dax
    for (const auto& row : matrix.value("cells", json::array())) {
        if (!row.is_object()) continue;
        const std::string status = row.value("status", "?");
        std::string kernel = text(row, "kernel");
        if (row.contains("release") && row["release"].is_string() && !row["release"].get<std::string>().empty())
            kernel += " (" + md_cell(row["release"].get<std::string>()) + ")";
        md << "| " << kernel << " | " << text(row, "device") << " | " << text(row, "mmo") << " | ";
        md << md_cell(status);
        if (row.contains("reason")) md << ": " << text(row, "reason");
        if (status == "skipped" || status == "not run") {
            md << " | | | | | | | | | |\n";
            continue;
        }
        std::string src = text(row, "memmap_source");
        const std::string mark = row.value("device", "") == "dax" ? "²" : "¹";
        if (row.contains("note")) src += " " + mark;
        auto lat = [&](const char* phase) {
            const std::string key = std::string(phase) + "_s_per_block";
            std::string s = num(row, key.c_str(), 1e3, "%.1f");
            const std::string by = std::string(phase) + "_timed_by";
            if (row.value(by, "") == "wall") s += " (wall)";
            return s;
        };
        md << " | " << src << " | " << text(row, "memmap_locality") << " | "
           << num(row, "memmap_altmap_pages", 1, "%.0f") << " | " << num(row, "memmap_page_allocator_pages", 1, "%.0f")
           << " | " << num(row, "free_consumed_per_gib_bytes", 1.0 / (1 << 20), "%.1f MiB") << " | " << lat("add")
           << " | " << lat("online") << " | " << lat("offline") << " | " << lat("remove") << " |\n";
        if (row.contains("note")) footnotes[mark] = text(row, "note");
    }
    for (const auto& [mark, note] : footnotes) md << "\n" << mark << " " << note << ".\n";
    if (matrix.contains("wall_s") && matrix["wall_s"].is_number()) {
        char b[64];
        std::snprintf(b, sizeof b, "\nwall time: %.0f s\n", matrix["wall_s"].get<double>());
        md << b;
    }
    return md.str();
}

namespace {

// One plot of the cells that ran: per-block latency of each phase (bars,
// log scale) and free memory consumed per GiB. Labels reach gnuplot only
// as data-file fields.
json write_matrix_plot(const json& matrix, const fs::path& out_dir) {
    if (!find_program("gnuplot"))
        throw Error("gnuplot not found: install gnuplot-nox (scripts/install-deps.sh does) or pass --no-plots");
    const fs::path dir = fs::absolute(out_dir);
    fs::create_directories(dir);
    std::ostringstream f;
    f << "cell add_ms online_ms offline_ms remove_ms free_mib_per_gib\n";
    int n = 0;
    for (const auto& row : matrix.value("cells", json::array())) {
        if (!row.is_object() || row.value("status", "") == "skipped" || !row.contains("add_s_per_block")) continue;
        f << plot_label(row.value("cell", "?"));
        for (const char* k : {"add_s_per_block", "online_s_per_block", "offline_s_per_block", "remove_s_per_block"})
            f << " " << (row.contains(k) && row[k].is_number() ? row[k].get<double>() * 1e3 : 0.0);
        f << " "
          << (row.contains("free_consumed_per_gib_bytes") && row["free_consumed_per_gib_bytes"].is_number()
                  ? row["free_consumed_per_gib_bytes"].get<double>() / (1 << 20)
                  : 0.0)
          << "\n";
        ++n;
    }
    json out = json::object();
    if (n == 0) return out;
    write_file(dir / "matrix.dat", f.str());
    plot_render(dir, "matrix",
                "set multiplot layout 2,1\n"
                "set style data histograms\nset style histogram clustered gap 1\nset style fill solid 0.8 border -1\n"
                "set key outside right top\nset grid ytics\nset xtics rotate by -30\n"
                "set logscale y\nset ylabel 'ms per 128 MiB block'\nset title 'per-block latency (medians)'\n"
                "plot 'matrix.dat' using 2:xtic(1) title columnheader(2), '' using 3 title columnheader(3), "
                "'' using 4 title columnheader(4), '' using 5 title columnheader(5)\n"
                "unset logscale y\nset ylabel 'MiB per GiB hot-added'\nset title 'free memory consumed'\n"
                "plot 'matrix.dat' using 6:xtic(1) title columnheader(6)\n"
                "unset multiplot",
                out);
    return out;
}

void save(const fs::path& out, const json& results) {
    write_file_atomic(out / "results.json", results.dump(1, ' ', false, json::error_handler_t::replace) + "\n");
}

}  // namespace

namespace {

// Every cell's A/B run, parsed (and refused) before the first boot; skipped
// cells keep a default config.
std::vector<AbConfig> cell_runs(const MatrixConfig& cfg, const std::vector<MatrixCell>& cells) {
    std::vector<AbConfig> runs(cells.size());
    for (std::size_t i = 0; i < cells.size(); ++i) {
        if (!cells[i].skip.empty()) continue;
        AbConfig c = cfg.run;
        c.arms = {parse_arm(cells[i].name + ":kernel=" + cells[i].kernel + ",device=" + device_name(cells[i].device) +
                                ",mmo=" + cells[i].mmo,
                            cfg.guest)};
        c.out = cfg.run.out / "cells" / cells[i].name;
        c.boots = 1;
        c.fallback_kernel.clear();
        c.fallback_size = 0;
        c.plots = false;
        c.reference = false;  // the drift reference serves the gate; cells are not gated
        c.title = "matrix cell " + cells[i].name;
        validate(c);
        runs[i] = std::move(c);
    }
    return runs;
}

// The matrix document before any cell runs: options, and a row per cell
// ("pending", or the reason it is skipped).
json matrix_document(const MatrixConfig& cfg, const std::vector<MatrixCell>& cells, std::uint64_t cycle_bytes) {
    json devs = json::array();
    for (auto d : cfg.devices) devs.push_back(device_name(d));
    json results = {{"schema", kMatrixSchema},
                    {"memhp_version", kVersion},
                    {"started", now_iso_utc()},
                    {"status", "running"},
                    {"options",
                     {{"kernels", cfg.kernels},
                      {"mmo", cfg.mmos},
                      {"devices", devs},
                      {"cycles", cfg.run.cycles},
                      {"cycle_bytes", cycle_bytes},
                      {"node", cfg.run.node},
                      {"zone", cfg.run.zone},
                      {"online", lab::online_mode_name(cfg.guest.online)}}},
                    {"cells", json::array()}};
    for (const auto& c : cells)
        results["cells"].push_back(c.skip.empty() ? json{{"cell", c.name},
                                                         {"kernel", c.kernel},
                                                         {"device", device_name(c.device)},
                                                         {"mmo", c.mmo},
                                                         {"status", "pending"}}
                                                  : matrix_row(c, json::object(), cycle_bytes));
    return results;
}

// Marks the cells that never ran, then saves the document with its plot and
// summary table.
void finish_matrix(const MatrixConfig& cfg, json& results, const std::string& status, Clock::time_point t0) {
    const auto& out = cfg.run.out;
    results["status"] = status;
    for (auto& row : results["cells"])
        if (row.value("status", "") == "pending") {
            row["status"] = "not run";
            row["reason"] = "the matrix was interrupted before this cell";
        }
    results["finished"] = now_iso_utc();
    results["wall_s"] = std::chrono::duration<double>(Clock::now() - t0).count();
    save(out, results);
    if (cfg.run.plots) {
        try {
            results["plots"] = write_matrix_plot(results, out / "plots");
        } catch (const std::exception& e) {
            results["plot_error"] = e.what();
        }
    }
    results["table_markdown"] = matrix_markdown(results);
    write_file_atomic(out / "summary.md", results["table_markdown"].get<std::string>());
    save(out, results);
}

// The progress line that ends a cell.
std::string cell_line(const std::string& tag, const json& row) {
    std::string line = tag + row["status"].get<std::string>();
    if (row.contains("reason")) line += ": " + row["reason"].get<std::string>();
    if (row.contains("memmap_source"))
        line += "; memmap " + row["memmap_source"].get<std::string>() + " (" +
                row["memmap_locality"].get<std::string>() + "), " + num(row, "memmap_altmap_pages", 1, "%.0f") +
                " altmap + " + num(row, "memmap_page_allocator_pages", 1, "%.0f") + " page-allocator pages";
    char b[48];
    std::snprintf(b, sizeof b, "; %.0f s", row["wall_s"].get<double>());
    return line + b;
}

// Runs one cell into `row`: "failed" with the reason when the run threw.
// An interruption is recorded in `row` and rethrown.
void run_cell(const MatrixCell& cell, const AbConfig& run_cfg, const std::string& tag, const Progress& progress,
              std::uint64_t cycle_bytes, json& row) {
    const auto tc = Clock::now();
    json run;
    try {
        (void)run_ab(
            run_cfg, [&](const std::string& s) { progress(tag + s); }, run);
        row = matrix_row(cell, run, cycle_bytes);
    } catch (const Interrupted&) {
        row = matrix_row(cell, run, cycle_bytes);
        row["status"] = "interrupted";
        row["reason"] = "Ctrl-C during this cell";
        throw;
    } catch (const std::exception& e) {  // a refusal at boot (UsageError), a failed download, ...
        row = matrix_row(cell, run, cycle_bytes);
        row["status"] = "failed";
        row["reason"] = cell_reason(e.what());
    }
    row["wall_s"] = std::chrono::duration<double>(Clock::now() - tc).count();
    row["results"] = (run_cfg.out / "results.json").string();
}

}  // namespace

int run_matrix(const MatrixConfig& cfg, const Progress& progress, json& results) {
    const auto cells = plan_matrix(cfg.kernels, cfg.devices, cfg.mmos);
    const auto& out = cfg.run.out;
    if (out.empty()) throw UsageError("no output directory");
    const std::uint64_t cycle_bytes = cfg.run.dimm_size * static_cast<std::uint64_t>(cfg.run.dimms);
    const std::vector<AbConfig> runs = cell_runs(cfg, cells);
    const auto t0 = Clock::now();
    fs::create_directories(out);
    results = matrix_document(cfg, cells, cycle_bytes);
    std::size_t to_run = 0;
    for (const auto& c : cells) {
        if (c.skip.empty())
            ++to_run;
        else
            progress("skip " + c.name + ": " + c.skip);
    }
    save(out, results);
    progress("matrix: " + std::to_string(cells.size()) + " cells, " + std::to_string(to_run) + " to run, " +
             std::to_string(cells.size() - to_run) + " skipped");
    int code = 0;
    std::size_t done = 0;
    for (std::size_t i = 0; i < cells.size(); ++i) {
        const auto& cell = cells[i];
        if (!cell.skip.empty()) continue;
        const std::string tag = "[" + std::to_string(++done) + "/" + std::to_string(to_run) + " " + cell.name + "] ";
        progress(tag + "kernel " + cell.kernel + ", " + device_name(cell.device) + ", memmap_on_memory=" + cell.mmo);
        json row;
        try {
            run_cell(cell, runs[i], tag, progress, cycle_bytes, row);
        } catch (const Interrupted&) {
            results["cells"][i] = std::move(row);
            finish_matrix(cfg, results, "interrupted", t0);
            throw;
        }
        results["cells"][i] = std::move(row);
        if (results["cells"][i]["status"] != "ok") code = 1;
        progress(cell_line(tag, results["cells"][i]));
        save(out, results);
    }
    finish_matrix(cfg, results, "complete", t0);
    return code;
}

}  // namespace memhp::ab
