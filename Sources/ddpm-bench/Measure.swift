// ddpm-bench's measuring: the timer, the bench's Trainer and sampler, the synthetic batches.
import ArgumentParser
import Foundation
import Shared

func processCPUSeconds() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6
}

func eprint(_ s: String) { writeStderr(s + "\n") }

/// Runs the sampler from noise (or from timestep `from`) on n samples, as `denoise` does.
func sample(_ predictor: EpsPredictor, schedule: Schedule, n: Int, kind: SamplerKind, steps: Int?, from: Int?,
            labels: [Int]? = nil) {
    var options = SamplerOptions()
    options.kind = kind
    options.steps = steps
    options.from = from
    _ = try! Sampling.sample(count: n, sampleShape: predictor.sampleShape, y: labels, predictor: predictor, options: options,
                             schedule: schedule, seed: 1)
}

func uniformBatch(_ n: Int, seed: UInt64) -> [Float] {
    var r = RandomStream(seed: seed, purpose: .toy, index: 0)
    return (0..<n).map { _ in Float(2 * r.nextUniform() - 1) }
}

/// Times `body` (one run = `per` units of work). Rates (img/s, steps/s) are per / median;
/// with `isTime` the figure is a time per unit instead (s, s/step): median / per.
func measure(_ key: String, unit: String, per: Double, warmup: Int, repeats: Int, extra: [String: Any],
             isTime: Bool = false, _ body: () -> Void) -> [String: Any] {
    for _ in 0..<warmup { body() }
    var runs: [Double] = [], util: [Double] = []
    for _ in 0..<repeats {
        let c0 = processCPUSeconds()
        let t0 = DispatchTime.now().uptimeNanoseconds
        body()
        let wall = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
        runs.append(wall)
        // share of our threads' capacity we actually got (low: other processes ran)
        util.append((processCPUSeconds() - c0) / (wall * Double(BLAS.maxThreads)))
    }
    let sorted = runs.sorted()
    let median = sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    let value = isTime ? median / per : per / median
    let medUtil = util.sorted()[util.count / 2]
    // Contention-robust companion figure: work per CPU-second of this process (a
    // one-core-equivalent rate; a quiet machine gives about threads x this).
    let cpuSeconds = zip(runs, util).map { $0 * $1 * Double(BLAS.maxThreads) }.sorted()
    let perCPU = isTime ? cpuSeconds[cpuSeconds.count / 2] / per : per / cpuSeconds[cpuSeconds.count / 2]
    eprint(String(format: "  %-18@ %10.2f %@   median %.4f s (min %.4f, max %.4f, %d runs; best %.2f; cpu use %.0f%%; %.2f per cpu-s)%@",
                  key as NSString, value, unit as NSString, median, sorted.first!, sorted.last!, runs.count,
                  isTime ? sorted.first! / per : per / sorted.first!, 100 * medUtil, perCPU, (medUtil < 0.85 ? " CONTAMINATED" : "") as NSString))
    var out: [String: Any] = ["value": value, "unit": unit, "median_s": median, "min_s": sorted.first!,
                              "max_s": sorted.last!, "runs_s": runs, "cpu_use": util,
                              "per_cpu_second": perCPU, "contaminated": medUtil < 0.85]
    for (k, v) in extra { out[k] = v }
    return out
}

/// The bench's training: the real `Trainer` on `batch` uniform samples in [-1, 1] (one epoch per
/// step), seed 1. Class-conditional when classes > 0: labels cycle 0..K-1, 10 % become the null class.
/// AdamW as the peer's: betas 0.9/0.999, eps 1e-8, weight decay 0.01, no clipping; EMA 0.9999.
func benchTrainer(_ net: Network, batch: Int, lr: Double, schedule: Schedule, dataSeed: UInt64, classes: Int = 0) throws -> Trainer {
    let data = TrainingData(x: uniformBatch(batch * net.inputShape.reduce(1, *), seed: dataSeed),
                            y: classes > 0 ? (0..<batch).map { $0 % classes } : nil, sampleShape: net.inputShape)
    var config = TrainConfig()
    config.batch = batch
    config.seed = 1
    config.classes = classes
    config.pUncond = 0.1
    config.optimizer.lr = lr
    config.optimizer.weightDecay = 0.01
    config.optimizer.clip = 0
    return try Trainer(network: net, schedule: schedule, data: data, config: config)
}

/// One timed training step (a failing step is a bug of the bench: it stops).
func step(_ trainer: Trainer) {
    do { try trainer.trainStep() } catch { fatalError("ddpm-bench: training step failed: \(error)") }
}
