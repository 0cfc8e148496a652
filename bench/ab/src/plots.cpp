// SPDX-License-Identifier: Apache-2.0
#include "memhp/ab/plots.hpp"

#include <algorithm>
#include <map>
#include <sstream>

#include "memhp/ab/report.hpp"
#include "memhp/ab/stats.hpp"
#include "memhp/error.hpp"
#include "memhp/files.hpp"
#include "memhp/process.hpp"

namespace memhp::ab {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kProbePhases = {"add", "populate", "online", "offline", "remove"};

}  // namespace

// An arm name as a quoted field of a data file. gnuplot never evaluates data
// (no backticks, no commands), and the loader only lets --arm names through;
// this keeps even a hand-built name from splitting a row or a field.
std::string plot_label(const std::string& name) {
    std::string s;
    for (char c : name) {
        const auto u = static_cast<unsigned char>(c);
        s += u >= 0x20 && u < 0x7f && c != '"' && c != '\\' ? c : '?';
    }
    return "\"" + (s.empty() ? std::string("?") : s) + "\"";
}

namespace {

double median_or0(const std::map<std::string, std::vector<double>>& s, const std::string& k) {
    auto it = s.find(k);
    return it == s.end() || it->second.empty() ? 0 : summarize(it->second).median;
}

// One plot: `body` is the gnuplot commands after the terminal is set; it
// is rendered once per format.
// The script holds no data and no paths from outside: only memhp's own text,
// numbers and fixed file names relative to `dir`, where gnuplot runs.
}  // namespace

void plot_render(const fs::path& dir, const std::string& name, const std::string& body, json& out) {
    std::ostringstream gp;
    gp << "# memhp ab: " << name << " (gnuplot " << name << ".gp renders it again, in this directory)\n";
    gp << "set terminal svg size 960,540 dynamic noenhanced font 'sans,12' background '#ffffff'\n";
    gp << "set output '" << name << ".svg'\n" << body << "\nunset output\n";
    gp << "set terminal pngcairo size 960,540 noenhanced font 'sans,10'\n";
    gp << "set output '" << name << ".png'\nreplot\nunset output\n";
    const auto script = dir / (name + ".gp");
    write_file(script, gp.str());
    RunOptions ro;
    ro.timeout = std::chrono::seconds(60);
    ro.cwd = dir;
    auto r = run({"gnuplot", name + ".gp"}, ro);
    if (r.exit_code != 0) throw Error("gnuplot failed on " + script.string() + ":\n" + last_lines(r.err + r.out, 10));
    out[name] = (dir / (name + ".svg")).string();
}

namespace {

// The trend of a noisy per-step curve: the median of a centred window of
// about a sixteenth of the steps (at least 3). Computed here, written to
// the data file: gnuplot only draws it.
std::vector<double> running_median(const std::vector<double>& y) {
    const std::size_t half = std::max<std::size_t>(1, y.size() / 32);
    std::vector<double> out;
    for (std::size_t i = 0; i < y.size(); ++i) {
        const std::size_t lo = i >= half ? i - half : 0, hi = std::min(y.size(), i + half + 1);
        out.push_back(summarize(std::vector<double>(y.begin() + static_cast<std::ptrdiff_t>(lo),
                                                    y.begin() + static_cast<std::ptrdiff_t>(hi)))
                          .median);
    }
    return out;
}

// The scale ramp at a glance: per-block cost with its trend, cumulative
// time, and (per arm) the online's sub-phases stacked as shares.
void scale_plots(const std::vector<ArmRecord>& arms, const fs::path& dir, json& out) {
    const std::size_t na = arms.size();
    bool any_e2e = false;
    for (std::size_t a = 0; a < na; ++a) {
        std::vector<double> x, cost, kernel_cum, e2e_cum;
        double kc = 0, ec = 0;
        for (const auto& s : arms[a].scale) {
            if (!s.ok) continue;
            x.push_back(s.present_before_bytes / (1 << 30));
            cost.push_back((s.probe_add_s + s.probe_online_s) / std::max(1.0, s.blocks) * 1e3);
            kc += s.probe_add_s + s.probe_online_s;
            ec += s.e2e_s;
            any_e2e = any_e2e || s.e2e_s > 0;
            kernel_cum.push_back(kc);
            e2e_cum.push_back(ec);
        }
        const auto trend = running_median(cost);
        const std::string label = plot_label(arms[a].name);
        const std::string stem = label.substr(0, label.size() - 1);
        std::ostringstream f;
        f << "present_GiB " << label << " " << stem << " trend\" " << stem << " kernel\" " << stem << " host e2e\"\n";
        for (std::size_t i = 0; i < x.size(); ++i)
            f << x[i] << " " << cost[i] << " " << trend[i] << " " << kernel_cum[i] << " " << e2e_cum[i] << "\n";
        write_file(dir / ("scale-cost-" + std::to_string(a) + ".dat"), f.str());
    }
    std::ostringstream b;
    b << "na = " << na << "\n"
      << "set title 'Kernel cost per memory block (add + online, memhp probes) and its trend'\n"
         "set xlabel 'hot-plugged memory already present [GiB]'\nset ylabel 'ms per block'\nset grid\n"
         "set key outside right top\nset yrange [0:*]\n"
         "plot for [a=0:na-1] sprintf('scale-cost-%d.dat', a) using 1:2 with points lc a+1 pt 7 ps 0.3 "
         "title columnheader(2), "
         "for [a=0:na-1] sprintf('scale-cost-%d.dat', a) using 1:3 with lines lc a+1 lw 2 title columnheader(3)";
    plot_render(dir, "scale-cost", b.str(), out);
    std::ostringstream c;
    c << "na = " << na << "\n"
      << "set title 'Cumulative hot-plug time'\n"
         "set xlabel 'hot-plugged memory already present [GiB]'\nset ylabel 'seconds'\nset grid\n"
         "set key outside right top\nset yrange [0:*]\n"
         "plot for [a=0:na-1] sprintf('scale-cost-%d.dat', a) using 1:4 with lines lc a+1 lw 2 title columnheader(4)";
    if (any_e2e)
        c << ", for [a=0:na-1] sprintf('scale-cost-%d.dat', a) using 1:5 with lines lc a+1 dt 2 title columnheader(5)";
    plot_render(dir, "scale-cumulative", c.str(), out);
    // Shares: one plot per arm, the online's sub-phases stacked (each band
    // between the running sums of the columns before it and its own).
    for (std::size_t a = 0; a < na; ++a) {
        std::map<std::string, bool> names;
        for (const auto& s : arms[a].scale)
            for (const auto& [k, _] : s.online_sub_s) names[k] = true;
        if (names.empty()) continue;
        std::vector<std::string> cols;
        cols.reserve(names.size());
        for (const auto& [k, _] : names) cols.push_back(k);
        std::ostringstream f;
        f << "present_GiB";
        for (const auto& k : cols) f << " " << plot_label(k);
        f << "\n";
        // Bins of 1/64 of the steps, so a 2048-step ramp draws 64 bands' worth of points.
        std::vector<const ScaleStep*> ok;
        for (const auto& s : arms[a].scale)
            if (s.ok && s.probe_online_s > 0) ok.push_back(&s);
        const std::size_t bin = std::max<std::size_t>(1, ok.size() / 64);
        for (std::size_t i = 0; i < ok.size(); i += bin) {
            std::map<std::string, double> sum;
            double all = 0;
            for (std::size_t j = i; j < std::min(ok.size(), i + bin); ++j)
                for (const auto& [k, v] : ok[j]->online_sub_s) sum[k] += v, all += v;
            if (all <= 0) continue;
            f << ok[i]->present_before_bytes / (1 << 30);
            double run = 0;
            for (const auto& k : cols) f << " " << (run += sum[k] / all * 100);
            f << "\n";
        }
        const std::string name = "scale-shares-" + std::to_string(a);
        write_file(dir / (name + ".dat"), f.str());
        std::ostringstream g;
        g << "set title 'Online sub-phases, share of each block online (stacked), arm " << a + 1 << "'\n"
          << "set xlabel 'hot-plugged memory already present [GiB]'\nset ylabel '% of the online'\nset grid\n"
             "set key outside right top\nset yrange [0:100]\nset style fill solid 0.8 border -1\n"
             "plot '"
          << name << ".dat' using 1:(0):2 with filledcurves title columnheader(2)";
        for (std::size_t k = 1; k < cols.size(); ++k)
            g << ", '' using 1:" << k + 1 << ":" << k + 2 << " with filledcurves title columnheader(" << k + 2 << ")";
        plot_render(dir, name, g.str(), out);
    }
}

}  // namespace

json write_plots(const json& results, const fs::path& out_dir) {
    return write_plots(results_from_json(results), out_dir);
}

namespace {

// Latency: one box per phase and arm, from the probes' durations.
void latency_plot(const std::vector<ArmRecord>& arms, const fs::path& dir, json& out) {
    const std::size_t na = arms.size();
    // Only (arm, phase) pairs with samples are plotted: gnuplot refuses a
    // boxplot without a single valid point (a phase that always failed).
    std::ostringstream elems;
    for (std::size_t a = 0; a < na; ++a) {
        // The header row names the arm: the key reads it with columnheader(2).
        std::ostringstream f;
        f << "phase_index " << plot_label(arms[a].name) << "\n";
        auto s = arm_samples(arms[a]);
        bool titled = false;
        for (std::size_t p = 0; p < kProbePhases.size(); ++p) {
            const auto& v = s["probe_" + kProbePhases[p] + "_s"];
            for (double x : v) f << p << " " << x * 1e3 << "\n";
            if (v.empty()) continue;
            elems << (elems.tellp() > 0 ? ", \\\n  " : "") << "'latency-" << a << ".dat' using ("
                  << p * (na + 1) + a + 1 << "):($1==" << p << " ? $2 : 1/0) lc " << a + 1
                  << (titled ? " notitle" : " title columnheader(2)");
            titled = true;
        }
        write_file(dir / ("latency-" + std::to_string(a) + ".dat"), f.str());
    }
    if (elems.tellp() > 0) {
        std::ostringstream b;
        b << "set title 'Hot-plug phase latency in the guest kernel (memhp probes), per cycle'\n"
             "set ylabel 'duration [ms] (log scale)'\nset logscale y\nset grid ytics\n"
             "set style fill solid 0.35 border -1\nset style boxplot outliers pointtype 7\n"
             "set style data boxplot\nset boxwidth 0.7\nset key outside right top\n"
             "set xtics (";
        for (std::size_t p = 0; p < kProbePhases.size(); ++p)
            b << (p ? ", " : "") << "'" << kProbePhases[p] << "' " << p * (na + 1) + (na + 1) / 2.0;
        b << ")\nset xrange [0:" << kProbePhases.size() * (na + 1) << "]\n";
        b << "plot " << elems.str();
        plot_render(dir, "latency", b.str(), out);
    }
}

// Memmap: where it came from and where it sits (median per cycle).
void memmap_plot(const std::vector<ArmRecord>& arms, const fs::path& dir, json& out) {
    std::ostringstream f;
    f << "# arm altmap_local_MiB page_allocator_local_MiB page_allocator_remote_MiB page_tables_MiB\n";
    for (const auto& a : arms) {
        auto s = arm_samples(a);
        const double mib = 1 << 20;
        const double buddy = median_or0(s, "memmap_page_allocator_bytes"),
                     remote = median_or0(s, "memmap_remote_bytes");
        f << plot_label(a.name) << " " << median_or0(s, "memmap_altmap_bytes") / mib << " "
          << std::max(0.0, buddy - remote) / mib << " " << remote / mib << " "
          << median_or0(s, "memmap_page_table_bytes") / mib << "\n";
    }
    write_file(dir / "memmap.dat", f.str());
    plot_render(dir, "memmap",
                "set title 'Memmap per cycle: source and NUMA locality (median)'\nset ylabel 'MiB'\n"
                "set style data histograms\nset style histogram rowstacked\nset style fill solid 0.8 border -1\n"
                "set boxwidth 0.5\nset grid ytics\nset key outside right top\nset yrange [0:*]\n"
                "plot 'memmap.dat' using 2:xtic(1) title 'altmap (on the added memory, local)' lc rgb '#2a9d8f', "
                "'' using 3 title 'page allocator, local' lc rgb '#e9c46a', "
                "'' using 4 title 'page allocator, remote node' lc rgb '#e76f51', "
                "'' using 5 title 'page tables' lc rgb '#8d99ae'",
                out);
}

// Free memory: what the add took from memory already online.
void free_memory_plot(const std::vector<ArmRecord>& arms, const fs::path& dir, json& out) {
    std::ostringstream f;
    f << "# arm free_consumed_MiB_probe memfree_drop_MiB_meminfo\n";
    for (const auto& a : arms) {
        auto s = arm_samples(a);
        f << plot_label(a.name) << " " << median_or0(s, "free_consumed_bytes") / (1 << 20) << " "
          << median_or0(s, "memfree_drop_at_add_bytes") / (1 << 20) << "\n";
    }
    write_file(dir / "free-memory.dat", f.str());
    plot_render(dir, "free-memory",
                "set title 'Free memory consumed by one hot-add, before the new memory is online (median)'\n"
                "set ylabel 'MiB'\nset style data histograms\nset style histogram clustered gap 1\n"
                "set style fill solid 0.8 border -1\nset grid ytics\nset key outside right top\nset yrange [0:*]\n"
                "plot 'free-memory.dat' using 2:xtic(1) title 'page-allocator pages taken (memhp probes)' lc rgb "
                "'#264653', "
                "'' using 3 title 'MemFree drop (/proc/meminfo)' lc rgb '#e76f51'",
                out);
}

// Scale: per-block add and online cost against memory already present.
void scale_plot(const std::vector<ArmRecord>& arms, const fs::path& dir, json& out) {
    const std::size_t na = arms.size();
    bool any = false;
    for (std::size_t a = 0; a < na; ++a) {
        // columns: present_before_GiB probe_add_ms probe_online_ms wall_add_ms wall_online_ms;
        // the header row holds the key titles (columnheader).
        std::ostringstream f;
        const std::string label = plot_label(arms[a].name);
        f << "present_before_GiB " << label.substr(0, label.size() - 1) << " add\" "
          << label.substr(0, label.size() - 1) << " online\" wall_add_ms wall_online_ms\n";
        for (const auto& s : arms[a].scale) {
            if (!s.ok) continue;
            any = true;
            f << s.present_before_bytes / (1 << 30) << " " << s.probe_add_s * 1e3 << " " << s.probe_online_s * 1e3
              << " " << s.wall_add_s * 1e3 << " " << s.wall_online_s * 1e3 << "\n";
        }
        write_file(dir / ("scale-" + std::to_string(a) + ".dat"), f.str());
    }
    if (any) {
        std::ostringstream b;
        b << "na = " << na << "\n"
          << "set title 'Per-block hot-plug cost as memory accumulates (memhp probes)'\n"
             "set xlabel 'hot-plugged memory already present [GiB]'\nset ylabel 'duration [ms]'\nset grid\n"
             "set key outside right top\nset yrange [0:*]\n"
             "plot for [a=0:na-1] sprintf('scale-%d.dat', a) using 1:2 with linespoints lc a+1 pt 7 ps 0.5 "
             "title columnheader(2), "
             "for [a=0:na-1] sprintf('scale-%d.dat', a) using 1:3 with linespoints lc a+1 dt 2 pt 5 ps 0.5 "
             "title columnheader(3)";
        plot_render(dir, "scale", b.str(), out);
        scale_plots(arms, dir, out);
    }
}

}  // namespace

json write_plots(const Results& results, const fs::path& out_dir) {
    if (!find_program("gnuplot"))
        throw Error("gnuplot not found: install gnuplot-nox (scripts/install-deps.sh does) or pass --no-plots");
    // gnuplot runs in the plot directory: every path it is given is absolute
    // (the default output directory, memhp-results/..., is relative).
    const fs::path dir = fs::absolute(out_dir);
    fs::create_directories(dir);
    json out = json::object();
    if (results.options.mode == "cycles") {
        latency_plot(results.arms, dir, out);
        memmap_plot(results.arms, dir, out);
        free_memory_plot(results.arms, dir, out);
    } else {
        scale_plot(results.arms, dir, out);
    }
    return out;
}

}  // namespace memhp::ab
