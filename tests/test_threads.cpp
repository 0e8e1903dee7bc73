// Issue 15: thread safety. One compiled model, its parameters const and shared, scores from 8
// threads at once, each thread with its own workspace; every score must be bit-identical to the
// single-threaded one. CI also builds this file under ThreadSanitizer (run.sh: build-tsan), which
// reports any data race on the shared parameters or the library's statics.
#include <doctest/doctest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "../examples/m1_model.hpp"
#include "support.hpp"

namespace {
using P = m1::scorer;

struct request {
    std::size_t batch = 0;
    std::vector<std::vector<float>> in;
    std::vector<float> want;
};
} // namespace

TEST_CASE("8 threads score with shared const parameters, bit-identical to one thread") {
    test::leaves L;
    constexpr std::size_t pool = 96;  // distinct examples
    test::fill<P>(L, pool);
    P::parameters params;
    for (std::size_t k = 0; k < P::n_params; ++k) {
        auto w = params.get(k);
        const auto& x = L[P::parameters::names[k]];
        for (std::size_t e = 0; e < w.size(); ++e) w[e] = static_cast<float>(x[e] * 0.2);
    }
    params.prepare();
    const P::parameters& shared = params;

    // requests of varied batch sizes and offsets into the pool, scored once on this thread
    std::vector<request> reqs;
    for (std::size_t r = 0; r < 24; ++r) {
        request q;
        q.batch = 1 + (r * 7) % 40;
        const std::size_t first = (r * 13) % (pool - q.batch);
        q.in.resize(P::n_inputs);
        for (std::size_t k = 0; k < P::n_inputs; ++k) {
            const std::size_t sz = P::tab.nodes[P::input_ids[k]].shape.size();
            const auto& x = L[P::tab.name_of(P::input_ids[k])];
            q.in[k].assign(x.begin() + static_cast<std::ptrdiff_t>(first * sz),
                           x.begin() + static_cast<std::ptrdiff_t>((first + q.batch) * sz));
        }
        q.want.assign(q.batch, -1.0f);
        P::workspace ws;
        P::io io;
        for (std::size_t k = 0; k < P::n_inputs; ++k) io.in[k] = q.in[k].data();
        io.out[0] = q.want.data();
        P::run(shared, ws, q.batch, io);
        reqs.push_back(std::move(q));
    }

    constexpr int threads = 8, rounds = 16;
    std::atomic<std::size_t> scored{0}, mismatches{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> pool_threads;
    for (int t = 0; t < threads; ++t)
        pool_threads.emplace_back([&, t] {
            P::workspace ws;  // each thread its own
            std::vector<float> out(64);
            while (!go.load()) std::this_thread::yield();
            for (int round = 0; round < rounds; ++round) {
                const request& q = reqs[(static_cast<std::size_t>(t) * 5 + static_cast<std::size_t>(round) * 3) % reqs.size()];
                P::io io;
                for (std::size_t k = 0; k < P::n_inputs; ++k) io.in[k] = q.in[k].data();
                io.out[0] = out.data();
                P::run(shared, ws, q.batch, io);
                for (std::size_t e = 0; e < q.batch; ++e) mismatches += out[e] != q.want[e];
                scored += q.batch;
            }
        });
    go = true;
    for (auto& th : pool_threads) th.join();
    MESSAGE(threads << " threads x " << rounds << " requests: " << scored.load() << " examples scored, "
                    << mismatches.load() << " mismatches");
    CHECK(scored.load() > 0);
    CHECK(mismatches.load() == 0);
}
