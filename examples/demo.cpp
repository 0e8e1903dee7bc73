// ctrec demo: train a CTR model end to end in C++ on a click log, save it, reload it in a fresh
// process, score single requests.
//
//   ./run.sh demo                        synthetic Criteo-format log (with behaviour sequences)
//   build/examples/demo --data FILE      a real Criteo-format file ([--skip-bad] [--rows N])
//
// The model (examples/m1_model.hpp): 26 sparse fields -> embeddings (looked up outside the
// graph, trained with sparse Adam) -> DIN over the behaviour sequence, CIN, DCN -> MLP.
// Labels of the synthetic log come from a hidden teacher, so there is real signal to learn.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "ctrec/io/criteo.hpp"
#include "ctrec/io/embedding.hpp"
#include "ctrec/io/safetensors.hpp"
#include "m1_model.hpp"

using namespace std::chrono;
using m1::dim;
using m1::fields;
using m1::steps;
using table = ctrec::embedding_table<float, dim>;

namespace {

// ---- options ------------------------------------------------------------------------------------
struct options {
    std::string data, out = "demo-out", reload_model, reload_data, reload_scores;
    std::size_t rows = 40000, epochs = 2, batch = 256, vocab = 100000;
    bool skip_bad = false;
};

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr,
                 "demo: %s\nusage: demo [--data FILE] [--skip-bad] [--rows N] [--epochs N] [--vocab N] [--out DIR]\n",
                 why);
    std::exit(2);
}

options parse(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage(("missing value after " + a).c_str());
            return argv[++i];
        };
        auto number = [&]() {
            const std::string v = value();
            char* end = nullptr;
            const unsigned long long n = std::strtoull(v.c_str(), &end, 10);
            if (v.empty() || *end || n == 0) usage(("not a positive number: " + v).c_str());
            return static_cast<std::size_t>(n);
        };
        if (a == "--data") o.data = value();
        else if (a == "--out") o.out = value();
        else if (a == "--rows") o.rows = number();
        else if (a == "--epochs") o.epochs = number();
        else if (a == "--vocab") o.vocab = number();
        else if (a == "--skip-bad") o.skip_bad = true;
        else if (a == "--reload") o.reload_model = value(), o.reload_data = value(), o.reload_scores = value();
        else usage(("unknown option " + a).c_str());
    }
    return o;
}

// ---- a synthetic click log with a hidden teacher ----------------------------------------------------
double u01(std::uint64_t seed, std::uint64_t stream, std::uint64_t e, std::uint64_t i) {
    return ctrec::random_uniform_value<double>(seed, stream, e, i);
}

// Row r: each field draws one of `card` values (skewed: popular values dominate, as in real logs);
// the history holds 50 items, a share of them from the target item's cluster; the teacher scores
// the row from per-value weights, the dense features and the history's affinity to the target.
ctrec::criteo_record synthetic_row(std::uint64_t r, double* teacher = nullptr) {
    constexpr std::uint64_t seed = 2026;
    constexpr std::size_t card = 500, clusters = 20, items = 2000;
    ctrec::criteo_record rec;
    double logit = -1.0;
    for (std::size_t f = 1; f < fields; ++f) {
        const std::uint64_t v = static_cast<std::uint64_t>(std::pow(u01(seed, 1, r, f), 3.0) * card);
        rec.cats[f] = static_cast<std::int64_t>(ctrec::detail::splitmix64(f * 1000003 + v) & 0xffffffffu);
        if (f < 9) logit += 2.0 * (u01(seed, 100 + f, v, 0) - 0.5);  // the teacher's value weights
    }
    for (std::size_t i = 0; i < m1::dense; ++i) {
        const double x = std::floor(std::exp(4.0 * u01(seed, 2, r, i)) - 1.0);
        rec.ints[i] = static_cast<std::int64_t>(x), rec.int_present[i] = u01(seed, 3, r, i) > 0.1;
        if (i < 4 && rec.int_present[i]) logit += (i % 2 ? -0.4 : 0.4) * std::log1p(x) / 4.0;
    }
    // target item (field 0) and history items share one id space: item i is in cluster i % 20,
    // and the user's affinity to the target's cluster drives the click
    const std::uint64_t item = static_cast<std::uint64_t>(std::pow(u01(seed, 1, r, 0), 2.0) * items);
    rec.cats[0] = static_cast<std::int64_t>(item);
    const std::uint64_t cluster = item % clusters;
    const double taste = u01(seed, 4, r, 0);  // how much this user likes the item's cluster
    const std::size_t len = 10 + static_cast<std::size_t>(u01(seed, 5, r, 0) * 41);
    std::size_t same = 0;
    for (std::size_t t = 0; t < len; ++t) {
        std::uint64_t it = static_cast<std::uint64_t>(u01(seed, 6, r, t) * items);
        if (u01(seed, 7, r, t) < taste) it = it / clusters * clusters + cluster, ++same;
        rec.sequence.push_back(static_cast<std::int64_t>(it));
    }
    logit += 3.0 * (static_cast<double>(same) / len - 0.3);
    rec.label = u01(seed, 8, r, 0) < 1.0 / (1.0 + std::exp(-logit)) ? 1.f : 0.f;
    if (teacher) *teacher = logit;
    return rec;
}

void write_synthetic(const std::string& path, std::uint64_t first, std::size_t n) {
    std::ofstream out(path);
    for (std::size_t r = 0; r < n; ++r) out << ctrec::format_criteo_line(synthetic_row(first + r), true) << '\n';
    if (!out) throw ctrec::error("demo: cannot write " + path);
}

std::vector<ctrec::criteo_record> read_file(const std::string& path, bool skip_bad, std::size_t limit) {
    std::ifstream in(path);
    if (!in) throw ctrec::error("demo: cannot open " + path);
    ctrec::criteo_reader rd(in, skip_bad);
    std::vector<ctrec::criteo_record> v;
    ctrec::criteo_record r;
    while (v.size() < limit && rd.next(r)) v.push_back(r);
    if (rd.bad_lines())
        std::fprintf(stderr, "%s: skipped %zu malformed lines (first: %s)\n", path.c_str(), rd.bad_lines(), rd.first_error().c_str());
    return v;
}

// ---- features: records -> the model's inputs ---------------------------------------------------------
// One table per field; the behaviour sequence's items share field 0's table (the target item).
struct features {
    std::vector<std::unique_ptr<table>> tables;
    explicit features(std::size_t vocab) {
        for (std::size_t f = 0; f < fields; ++f) tables.push_back(std::make_unique<table>("embedding/C" + std::to_string(f + 1), vocab));
    }
    void initialize(std::uint64_t seed) {
        for (auto& t : tables) t->initialize(seed, 0.05);
    }
};

struct batch_buffers {
    std::size_t n = 0;
    std::vector<float> sparse, dense, seq, mask, label;
    std::vector<std::int64_t> ids[fields];
    std::vector<std::int64_t> seq_ids;
    std::vector<std::uint32_t> seq_off;
    explicit batch_buffers(std::size_t cap)
        : sparse(cap * fields * dim), dense(cap * m1::dense), seq(cap * steps * dim), mask(cap * steps), label(cap) {
        for (auto& v : ids) v.reserve(cap);
        seq_ids.reserve(cap * steps);
        seq_off.reserve(cap * steps + 1);
    }
    // examples [b0, b0 + n) of recs
    void fill(const features& ft, const std::vector<ctrec::criteo_record>& recs, std::size_t b0, std::size_t count) {
        n = count;
        for (auto& v : ids) v.clear();
        seq_ids.clear(), seq_off.assign(1, 0);
        for (std::size_t b = 0; b < n; ++b) {
            const auto& r = recs[b0 + b];
            label[b] = r.label;
            for (std::size_t i = 0; i < m1::dense; ++i) {
                const double x = static_cast<double>(r.ints[i]);
                dense[b * m1::dense + i] = r.int_present[i] ? static_cast<float>(x >= 0 ? std::log1p(x) : -std::log1p(-x)) : 0.f;
            }
            for (std::size_t f = 0; f < fields; ++f) ids[f].push_back(r.cats[f]);
            // the last `steps` items, oldest first; padding after them
            const std::size_t len = std::min(r.sequence.size(), steps), from = r.sequence.size() - len;
            for (std::size_t t = 0; t < steps; ++t) {
                if (t < len) seq_ids.push_back(r.sequence[from + t]);
                seq_off.push_back(static_cast<std::uint32_t>(seq_ids.size()));
                mask[b * steps + t] = t < len ? 1.f : 0.f;
            }
        }
        for (std::size_t f = 0; f < fields; ++f)
            ft.tables[f]->lookup(ids[f], {}, ctrec::pooling::sum, sparse.data() + f * dim, fields * dim);
        ft.tables[0]->lookup(seq_ids, seq_off, ctrec::pooling::sum, seq.data(), dim);
    }
};

double log_loss(const std::vector<float>& p, const std::vector<float>& y) {
    double s = 0;
    for (std::size_t i = 0; i < p.size(); ++i) {
        const double q = std::clamp(static_cast<double>(p[i]), 1e-7, 1 - 1e-7);
        s -= y[i] > 0.5f ? std::log(q) : std::log(1 - q);
    }
    return s / static_cast<double>(p.size());
}
double auc(const std::vector<float>& s, const std::vector<float>& y) {
    std::vector<std::size_t> idx(s.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return s[a] < s[b]; });
    double pos = 0, neg = 0, rank = 0;
    for (std::size_t i = 0; i < idx.size();) {  // ties share their mean rank
        std::size_t j = i;
        while (j < idx.size() && s[idx[j]] == s[idx[i]]) ++j;
        const double mid = (static_cast<double>(i) + static_cast<double>(j) + 1) / 2;
        for (std::size_t k = i; k < j; ++k)
            if (y[idx[k]] > 0.5f) pos += 1, rank += mid;
            else neg += 1;
        i = j;
    }
    return pos && neg ? (rank - pos * (pos + 1) / 2) / (pos * neg) : 0.5;
}

// Scores every record with the scoring program.
std::vector<float> score_all(const features& ft, const m1::scorer::parameters& sp, const std::vector<ctrec::criteo_record>& recs,
                             std::size_t bsz) {
    m1::scorer::workspace ws;
    batch_buffers bb(bsz);
    std::vector<float> out(recs.size());
    for (std::size_t b0 = 0; b0 < recs.size(); b0 += bsz) {
        const std::size_t n = std::min(bsz, recs.size() - b0);
        bb.fill(ft, recs, b0, n);
        m1::scorer::io io;
        io.input<"sparse">(bb.sparse.data()).input<"dense">(bb.dense.data()).input<"seq">(bb.seq.data()).input<"mask">(bb.mask.data());
        io.output<0>(out.data() + b0);
        m1::scorer::run(sp, ws, n, io);
    }
    return out;
}

// ---- saving and loading ----------------------------------------------------------------------------
void save_model(const std::string& path, const features& ft, const m1::scorer::parameters& sp,
                const std::vector<ctrec::criteo_record>& check_rows) {
    namespace st = ctrec::safetensors;
    st::writer w;
    st::add_parameters<m1::scorer>(w, sp);
    for (auto& t : ft.tables) w.add(t->name(), std::span<const float>(t->values()), {t->vocab(), dim});
    // verification vectors: a few examples' model inputs and the scores they must give
    batch_buffers bb(check_rows.size());
    bb.fill(ft, check_rows, 0, check_rows.size());
    const std::size_t n = check_rows.size();
    st::add_verification<m1::scorer>(w, sp, n,
                                     {{"sparse", std::span<const float>(bb.sparse.data(), n * fields * dim)},
                                      {"dense", std::span<const float>(bb.dense.data(), n * m1::dense)},
                                      {"seq", std::span<const float>(bb.seq.data(), n * steps * dim)},
                                      {"mask", std::span<const float>(bb.mask.data(), n * steps)}});
    w.metadata("model", "ctrec demo M1").save(path);
}

void load_model(const std::string& path, features& ft, m1::scorer::parameters& sp) {
    namespace st = ctrec::safetensors;
    std::vector<st::named_tensor<float>> extra;
    for (auto& t : ft.tables) extra.push_back({t->name(), {t->vocab(), dim}, std::span<float>(t->values())});
    st::load_options opt;
    st::load_parameters<m1::scorer>(path, sp, opt, extra);
}

int reload_and_score(const options& o) {
    auto recs = read_file(o.reload_data, false, ~std::size_t(0));
    // the vocabulary is read from the file (the tables' shapes)
    std::size_t vocab = o.vocab;
    features ft(vocab);
    m1::scorer::parameters sp;
    load_model(o.reload_model, ft, sp);
    const std::vector<float> s = score_all(ft, sp, recs, o.batch);
    std::ofstream out(o.reload_scores, std::ios::binary);
    out.write(reinterpret_cast<const char*>(s.data()), static_cast<std::streamsize>(s.size() * sizeof(float)));
    return out ? 0 : 1;
}

void progress(std::size_t epoch, std::size_t done, std::size_t total, double rate, double loss) {
    const int width = 30, filled = static_cast<int>(width * done / std::max<std::size_t>(total, 1));
    std::fprintf(stderr, "\repoch %zu [%.*s%*s] %6zu/%zu  %7.0f ex/s  loss %.4f", epoch, filled,
                 "##############################", width - filled, "", done, total, rate, loss);
}

} // namespace

int main(int argc, char** argv) try {
    const options o = parse(argc, argv);
    if (!o.reload_model.empty()) return reload_and_score(o);
    std::string cmd = "mkdir -p '" + o.out + "'";
    if (std::system(cmd.c_str()) != 0) throw ctrec::error("demo: cannot create " + o.out);

    // ---- data ----
    std::vector<ctrec::criteo_record> train, valid;
    const auto t_data = steady_clock::now();
    if (o.data.empty()) {
        const std::size_t n_valid = o.rows / 5;
        write_synthetic(o.out + "/train.txt", 0, o.rows);
        write_synthetic(o.out + "/valid.txt", 1u << 30, n_valid);
        train = read_file(o.out + "/train.txt", false, ~std::size_t(0));
        valid = read_file(o.out + "/valid.txt", false, ~std::size_t(0));
        std::printf("synthetic click log (Criteo format + 50-long histories): %zu train, %zu validation rows in %s/\n",
                    train.size(), valid.size(), o.out.c_str());
        std::vector<float> t(valid.size()), y(valid.size());
        for (std::size_t i = 0; i < valid.size(); ++i) {
            double l = 0;
            y[i] = synthetic_row((1u << 30) + i, &l).label, t[i] = static_cast<float>(l);
        }
        std::printf("the hidden teacher's own validation AUC (the ceiling): %.4f\n", auc(t, y));
    } else {
        auto all = read_file(o.data, o.skip_bad, o.rows + o.rows / 5);
        const std::size_t n_valid = std::max<std::size_t>(all.size() / 6, 1);
        if (all.size() < 2) throw ctrec::error("demo: " + o.data + " holds fewer than 2 usable rows");
        valid.assign(all.end() - static_cast<std::ptrdiff_t>(n_valid), all.end());
        all.resize(all.size() - n_valid);
        train = std::move(all);
        std::printf("%s: %zu train, %zu validation rows\n", o.data.c_str(), train.size(), valid.size());
        ctrec::criteo_record tmp;
        std::ofstream v(o.out + "/valid.txt");
        for (auto& r : valid) v << ctrec::format_criteo_line(r, false) << '\n';
    }
    double pos = 0;
    for (auto& r : train) pos += r.label;
    std::printf("click rate %.3f; data ready in %.1f s\n", pos / train.size(),
                duration<double>(steady_clock::now() - t_data).count());

    // ---- model ----
    features ft(o.vocab);
    ft.initialize(11);
    m1::train_step::parameters p;
    ctrec::layers::initialize<m1::train_net>(p, 5);
    m1::train_step::workspace ws;
    m1::train_step::gradients g;
    ctrec::optimizer<m1::train_step, ctrec::adam> opt({.learning_rate = 1e-3});
    const ctrec::adam sparse_rule{.learning_rate = 1e-3};
    std::vector<table::state<ctrec::adam>> tstate;
    for (auto& t : ft.tables) tstate.emplace_back(*t, sparse_rule);
    std::vector<ctrec::sparse_gradient<float, dim>> tgrad(fields);
    batch_buffers bb(o.batch);
    std::vector<float> d_sparse(o.batch * fields * dim), d_seq(o.batch * steps * dim);
    m1::scorer::parameters sp;
    std::printf("model: %zu dense parameters, %zu x %zu x %zu embedding values\n", m1::train_step::parameters::offsets.back(),
                fields, o.vocab, dim);

    std::vector<float> valid_y, train_y;
    for (auto& r : valid) valid_y.push_back(r.label);
    for (auto& r : train) train_y.push_back(r.label);
    for (std::size_t epoch = 1; epoch <= o.epochs; ++epoch) {
        const auto t0 = steady_clock::now();
        auto last = t0;
        double running = 0, seen = 0;
        for (std::size_t b0 = 0; b0 < train.size(); b0 += o.batch) {
            const std::size_t n = std::min(o.batch, train.size() - b0);
            bb.fill(ft, train, b0, n);
            float loss = 0;
            m1::train_step::io io;
            g.bind(io);
            io.input<"sparse">(bb.sparse.data()).input<"dense">(bb.dense.data()).input<"seq">(bb.seq.data());
            io.input<"mask">(bb.mask.data()).input<"label">(bb.label.data()).output<0>(&loss);
            io.out[m1::train_step::input_grad<"sparse">] = d_sparse.data();
            io.out[m1::train_step::input_grad<"seq">] = d_seq.data();
            io.seed = epoch * 1000003 + b0;
            m1::train_step::run(p, ws, n, io);
            opt.apply(p, g);
            // embeddings: the rows this batch used, and only those
            for (std::size_t f = 0; f < fields; ++f) {
                tgrad[f].clear();
                ft.tables[f]->backward(bb.ids[f], {}, ctrec::pooling::sum, d_sparse.data() + f * dim, fields * dim, tgrad[f]);
            }
            ft.tables[0]->backward(bb.seq_ids, bb.seq_off, ctrec::pooling::sum, d_seq.data(), dim, tgrad[0]);
            for (std::size_t f = 0; f < fields; ++f) ft.tables[f]->apply(sparse_rule, tgrad[f], tstate[f]);
            running = seen ? 0.98 * running + 0.02 * loss : loss, seen += n;
            const auto now = steady_clock::now();
            if (now - last > milliseconds(200) || b0 + n == train.size()) {
                progress(epoch, b0 + n, train.size(), seen / duration<double>(now - t0).count(), running);
                last = now;
            }
        }
        std::fprintf(stderr, "\n");
        ctrec::copy_parameters(p, sp);
        sp.prepare();
        const auto tr = score_all(ft, sp, train, o.batch), va = score_all(ft, sp, valid, o.batch);
        std::printf("epoch %zu: train log loss %.4f AUC %.4f | validation log loss %.4f AUC %.4f | %.1f s\n", epoch,
                    log_loss(tr, train_y), auc(tr, train_y), log_loss(va, valid_y), auc(va, valid_y),
                    duration<double>(steady_clock::now() - t0).count());
    }

    // ---- save, reload in a fresh process, compare ----
    const std::string model_path = o.out + "/model.safetensors";
    const std::vector<ctrec::criteo_record> check(valid.begin(), valid.begin() + static_cast<std::ptrdiff_t>(std::min<std::size_t>(8, valid.size())));
    save_model(model_path, ft, sp, check);
    const std::vector<float> mine = score_all(ft, sp, valid, o.batch);
    const std::string scores_path = o.out + "/reloaded_scores.bin";
    cmd = "'" + std::string(argv[0]) + "' --vocab " + std::to_string(o.vocab) + " --reload '" + model_path + "' '" + o.out +
          "/valid.txt' '" + scores_path + "'";
    if (std::system(cmd.c_str()) != 0) throw ctrec::error("demo: the reloading process failed");
    std::vector<float> theirs(mine.size());
    std::ifstream in(scores_path, std::ios::binary);
    in.read(reinterpret_cast<char*>(theirs.data()), static_cast<std::streamsize>(theirs.size() * sizeof(float)));
    const bool same = in && std::memcmp(theirs.data(), mine.data(), mine.size() * sizeof(float)) == 0;
    std::printf("saved %s; a fresh process reloaded it (verification vectors passed) and scored %zu rows: %s\n",
                model_path.c_str(), mine.size(), same ? "identical scores" : "SCORES DIFFER");
    if (!same) return 1;

    // ---- serving: single requests (lookups + scoring), then batches ----
    batch_buffers one(1);
    m1::scorer::workspace sws;
    std::vector<double> lat;
    float y = 0;
    const std::size_t reqs = std::min<std::size_t>(valid.size(), 2000);
    for (std::size_t i = 0; i < reqs; ++i) {
        const auto t0 = steady_clock::now();
        one.fill(ft, valid, i, 1);
        m1::scorer::io io;
        io.input<"sparse">(one.sparse.data()).input<"dense">(one.dense.data()).input<"seq">(one.seq.data()).input<"mask">(one.mask.data());
        io.output<0>(&y);
        m1::scorer::run(static_cast<const m1::scorer::parameters&>(sp), sws, 1, io);
        lat.push_back(duration<double, std::micro>(steady_clock::now() - t0).count());
    }
    std::sort(lat.begin(), lat.end());
    const auto t1 = steady_clock::now();
    const std::vector<float> again = score_all(ft, sp, valid, o.batch);
    const double thr = valid.size() / duration<double>(steady_clock::now() - t1).count();
    std::printf("single requests: p50 %.1f us, p99 %.1f us (embedding lookups included); batches of %zu: %.0f examples/s\n",
                lat[lat.size() / 2], lat[lat.size() * 99 / 100], o.batch, thr);
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "\n%s\n", e.what());
    return 1;
}
