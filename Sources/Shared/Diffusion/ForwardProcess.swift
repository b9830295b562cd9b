// The forward (noising) process q(x_t | x_0) of Ho et al. 2020:
//   x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,  eps ~ N(0, I)      (eq. 4, reparameterised)
// and its inverse for a known eps (eq. 15, Posterior.predictX0):
//   x_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)
// Timesteps are 0-based (t = 0 .. T-1, T-1 the noisiest).
//
// Reproducibility: the eps of a sample is a pure function of (seed, the sample's
// global index in the stream, position in the sample) through NormalGenerator
// (purpose .noise); a random t is RandomStream(seed, .timestep, index).nextInt(below: T).
// Neither depends on how samples are split into frames nor on the thread count.
import Foundation

public struct ForwardProcess: Sendable {
    public let schedule: Schedule
    public let seed: UInt64
    public let generator: NormalGenerator
    /// sqrt(abar_t) and sqrt(1 - abar_t) rounded to Float, the coefficients applied.
    public let a: [Float]
    public let b: [Float]

    public init(schedule: Schedule, seed: UInt64) {
        self.schedule = schedule
        self.seed = seed
        self.generator = NormalGenerator(seed: seed, purpose: .noise)
        self.a = schedule.sqrtAlphaBar.map { Float($0) }
        self.b = schedule.sqrtOneMinusAlphaBar.map { Float($0) }
    }

    /// x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (Ho et al. eq. 4), with the coefficients a, b of t;
    /// the one definition, in Float (noise, training) or Double (the bound). Its inverse is Posterior.predictX0.
    @inline(__always)
    public static func qSample<F: BinaryFloatingPoint>(x0: F, eps: F, a: F, b: F) -> F { a * x0 + b * eps }

    /// t drawn uniformly from 0 ..< T for each of `count` samples whose first global index is `firstIndex`.
    public func randomTimesteps(count: Int, firstIndex: UInt64) -> [Int] {
        (0..<count).map { s in
            var r = RandomStream(seed: seed, purpose: .timestep, index: firstIndex + UInt64(s))
            return r.nextInt(below: schedule.T)
        }
    }

    /// Parses `-t`: one timestep or a comma-separated list, each in 0 ..< T.
    public static func parseTimesteps(_ text: String, T: Int) throws -> [Int] {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
        var out: [Int] = []
        for p in parts {
            let s = p.trimmingCharacters(in: .whitespaces)
            guard let t = Int(s) else {
                throw DDPMError("-t '\(text)': '\(s)' is not an integer timestep (expected e.g. -t 500 or -t 0,250,999)")
            }
            guard t >= 0 && t < T else {
                throw DDPMError("-t \(t) is out of range: timesteps are 0-based, 0 ... \(T - 1) for this schedule (T = \(T))")
            }
            out.append(t)
        }
        return out
    }

    /// A piece of work: samples s0 ..< s1, positions p0 ..< p1 within each.
    struct Unit { var s0, s1, p0, p1: Int }

    /// Splits N samples of D values into pieces of about `piece` values (multiples of 32 positions).
    static func units(N: Int, D: Int, piece: Int = 1 << 16) -> [Unit] {
        var u: [Unit] = []
        if D >= piece {
            for s in 0..<N {
                var p = 0
                while p < D { u.append(Unit(s0: s, s1: s + 1, p0: p, p1: min(p + piece, D))); p += piece }
            }
        } else if D > 0 {
            let g = max(1, piece / D)
            var s = 0
            while s < N { u.append(Unit(s0: s, s1: min(s + g, N), p0: 0, p1: D)); s += g }
        }
        return u
    }

    /// Runs `body` on every unit on up to `threads` threads. Units are handed out one at a
    /// time (a worker that gets less CPU simply takes fewer); results do not depend on it.
    static func parallel(_ units: [Unit], threads: Int, _ body: (Unit) -> Void) {
        let n = max(1, min(threads, units.count))
        if n == 1 { for u in units { body(u) }; return }
        let lock = NSLock()
        var next = 0
        DispatchQueue.concurrentPerform(iterations: n) { _ in
            while true {
                lock.lock()
                let i = next
                next += 1
                lock.unlock()
                guard i < units.count else { return }
                body(units[i])
            }
        }
    }

    /// Noises a batch of N = x0.count / D samples whose first global index is `firstIndex`.
    /// `timesteps` holds one [N] array per output; every output uses the same eps.
    /// Returns eps and one x_t per entry of `timesteps`. Checks its arguments (the library is
    /// built -Ounchecked, where preconditions vanish).
    public func apply(x0: UnsafeBufferPointer<Float>, sampleSize D: Int, firstIndex: UInt64,
                      timesteps: [[Int]], threads: Int = ProcessInfo.processInfo.activeProcessorCount) throws -> (eps: [Float], xt: [[Float]]) {
        guard D > 0, x0.count % D == 0, x0.count > 0 else {
            throw DDPMError("ForwardProcess.apply: \(x0.count) values do not make samples of \(D)")
        }
        guard !timesteps.isEmpty else { throw DDPMError("ForwardProcess.apply: no timesteps") }
        let n = x0.count, N = n / D
        for ts in timesteps {
            guard ts.count == N else { throw DDPMError("ForwardProcess.apply: \(ts.count) timesteps for \(N) samples") }
            if let bad = ts.first(where: { $0 < 0 || $0 >= schedule.T }) {
                throw DDPMError("t = \(bad) is out of range 0 ... \(schedule.T - 1)")
            }
        }
        let units = ForwardProcess.units(N: N, D: D)
        let gen = generator, a = self.a, b = self.b
        let x = x0.baseAddress!
        var xts: [[Float]] = []
        let eps = [Float](unsafeUninitializedCapacity: n) { epsBuf, epsCount in
            let e = epsBuf.baseAddress!
            let first = [Float](unsafeUninitializedCapacity: n) { xtBuf, xtCount in
                let o = xtBuf.baseAddress!
                let ts = timesteps[0]
                // eps and the first x_t in one pass, while the piece of eps is in cache.
                ForwardProcess.parallel(units, threads: threads) { u in
                    let len = u.p1 - u.p0
                    for s in u.s0..<u.s1 {
                        let base = s * D + u.p0
                        gen.fill(index: firstIndex &+ UInt64(s), from: u.p0, count: len, into: e + base)
                        let ca = a[ts[s]], cb = b[ts[s]]
                        for i in base..<(base + len) { o[i] = ForwardProcess.qSample(x0: x[i], eps: e[i], a: ca, b: cb) }
                    }
                }
                xtCount = n
            }
            xts.append(first)
            epsCount = n
        }
        for ts in timesteps.dropFirst() {
            let xt = [Float](unsafeUninitializedCapacity: n) { xtBuf, xtCount in
                let o = xtBuf.baseAddress!
                eps.withUnsafeBufferPointer { epsBuf in
                    let e = epsBuf.baseAddress!
                    ForwardProcess.parallel(units, threads: threads) { u in
                        for s in u.s0..<u.s1 {
                            let base = s * D + u.p0
                            let ca = a[ts[s]], cb = b[ts[s]]
                            for i in base..<(base + u.p1 - u.p0) { o[i] = ForwardProcess.qSample(x0: x[i], eps: e[i], a: ca, b: cb) }
                        }
                    }
                }
                xtCount = n
            }
            xts.append(xt)
        }
        return (eps, xts)
    }
}
