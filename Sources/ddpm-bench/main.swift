// ddpm-bench: times the NN core on the peer benchmark's workloads
// (/work/shared/peers/README.md keys), JSON on stdout, a table on stderr.
import ArgumentParser
import Foundation
import Shared

@main
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ddpm-bench",
        abstract: "Benchmark the U-Net and MLP training/forward steps (peer-comparable keys).",
        discussion: """
        Reads nothing. Writes JSON to stdout ({"env", "method", "figures": {key: {value, unit, \
        median_s, min_s, max_s, runs_s, ...}}, "peak_rss_mb"}) and a readable table to stderr. \
        Keys: unet.train_b64, unet.train_b128, unet.forward_b64, unet.ddpm_step_b64, unet.ddim50_b64, \
        cond.train_b64, cond.cfg_step_b64, mlp.train_b256, mlp.sample_10k, as defined in \
        the peer benchmark (bench-unet-28, mlp-2d, linear schedule T=1000). Each figure also has \
        cpu_use (share of the threads' capacity the process got; < 85% is flagged \
        CONTAMINATED: other processes ran) and per_cpu_second. A training step is `train`'s own \
        (Trainer.trainStep): AdamW as the peer (lr 1e-4 / 1e-3, weight decay 0.01, no clipping), \
        plus the EMA of the weights that Trainer always keeps.

        Examples:
          ddpm-bench > bench.json
          ddpm-bench --sections mlp --repeats 3
          ddpm-bench --sections unet --profile 2> profile.txt
        """,
        version: toolkitVersion)

    @Option(help: "Comma-separated sections: unet, cond, mlp.") var sections = "unet,cond,mlp"
    @Option(help: "Timed runs per figure (median reported).") var repeats = 5
    @Option(help: "Threads (OpenBLAS and our own parallel loops).") var threads = 2
    @Flag(help: "Also print per-layer forward+backward times of the U-Net training step (stderr).") var profile = false

    static func main() { runTool() }

    func run() throws {
        guard repeats >= 1 else { throw DDPMError("--repeats must be >= 1") }
        guard threads >= 1 else { throw DDPMError("--threads must be >= 1") }
        let wanted = Set(sections.split(separator: ",").map { String($0) })
        for s in wanted where !["unet", "cond", "mlp"].contains(s) { throw DDPMError("unknown section '\(s)' (expected unet, cond, mlp)") }
        BLAS.maxThreads = threads
        var figures: [String: Any] = [:]
        let sched = Schedule.standard()
        eprint("ddpm-bench \(toolkitVersion): \(threads) threads, \(repeats) runs per figure (median), preliminary")
        if wanted.contains("unet") {
            let net = NetworkFactory.benchUNet28(seed: 1)
            eprint("[unet] bench-unet-28: \(net.parameters.reduce(0) { $0 + $1.count }) params")
            for b in [64, 128] {
                let trainer = try benchTrainer(net, batch: b, lr: 1e-4, schedule: sched, dataSeed: 7)
                figures["unet.train_b\(b)"] = measure("unet.train_b\(b)", unit: "img/s", per: Double(b),
                                                      warmup: 2, repeats: repeats, extra: ["batch": b]) { step(trainer) }
            }
            let x = uniformBatch(64 * 784, seed: 9)
            let t = [Int](repeating: 500, count: 64)
            figures["unet.forward_b64"] = measure("unet.forward_b64", unit: "img/s", per: 64, warmup: 2,
                                                  repeats: repeats, extra: ["batch": 64]) {
                _ = net.forward(x, t: t, y: nil, training: false)
            }
            if profile {
                let trainer = try benchTrainer(net, batch: 64, lr: 1e-4, schedule: sched, dataSeed: 7)
                step(trainer)
                net.resetProfile()
                net.profile = true
                ConvProfile.enabled = threads == 1
                ConvProfile.seconds = [0, 0, 0]
                let steps = 3
                for _ in 0..<steps { step(trainer) }
                net.profile = false
                ConvProfile.enabled = false
                if threads == 1 {
                    let c = ConvProfile.seconds.map { $0 / Double(steps) * 1e3 }
                    eprint(String(format: "[profile] conv CPU ms/step: im2col %.1f, GEMM %.1f, col2im %.1f", c[0], c[1], c[2]))
                }
                let total = net.opTimes.reduce(0, +)
                eprint("[profile] unet train b64, per step, forward+backward per op (excl. loss/update/time MLP):")
                for (k, tm) in net.opTimes.enumerated().sorted(by: { $0.1 > $1.1 }) {
                    eprint(String(format: "  %-40@ %8.2f ms  %5.1f%%", net.opNames[k] as NSString, tm / Double(steps) * 1e3, 100 * tm / total))
                }
                eprint(String(format: "  %-40@ %8.2f ms", "total" as NSString, total / Double(steps) * 1e3))
                // forward only (sampling), batch 64
                net.resetProfile()
                net.profile = true
                ConvProfile.enabled = threads == 1
                ConvProfile.seconds = [0, 0, 0]
                for _ in 0..<steps { _ = net.forward(x, t: t, y: nil, training: false) }
                net.profile = false
                ConvProfile.enabled = false
                let ftotal = net.opTimes.reduce(0, +)
                let fc = ConvProfile.seconds.map { $0 / Double(steps) * 1e3 }
                eprint(String(format: "[profile] unet forward b64: %.1f ms per forward; conv im2col %.1f, GEMM %.1f ms (CPU, 1 thread only)",
                              ftotal / Double(steps) * 1e3, fc[0], fc[1]))
                var groups: [String: Double] = [:]
                for (k, tm) in net.opTimes.enumerated() { groups[String(net.opNames[k].split(separator: " ")[0]), default: 0] += tm }
                for (g, tm) in groups.sorted(by: { $0.value > $1.value }) {
                    eprint(String(format: "  %-12@ %8.2f ms", g as NSString, tm / Double(steps) * 1e3))
                }
            }
        }
        if wanted.contains("unet") {
            // Sampling, as the peer's scheduler loops: one DDPM step (forward + posterior step) and
            // 50 DDIM steps end to end, 64 images, through the same Sampler and ModelPredictor as `denoise`.
            let net = NetworkFactory.benchUNet28(seed: 1)
            let predictor = try ModelPredictor(network: net, schedule: sched)
            figures["unet.ddpm_step_b64"] = measure("unet.ddpm_step_b64", unit: "s/step", per: 10, warmup: 1,
                                                    repeats: repeats, extra: ["batch": 64, "steps_per_run": 10], isTime: true) {
                sample(predictor, schedule: sched, n: 64, kind: .ddpm, steps: nil, from: 9)
            }
            if let f = figures["unet.ddpm_step_b64"] as? [String: Any], let v = f["value"] as? Double {
                eprint(String(format: "  ddpm_1000_steps_extrapolated_s %.1f", 1000 * v))
            }
            figures["unet.ddim50_b64"] = measure("unet.ddim50_b64", unit: "s", per: 1, warmup: 0,
                                                 repeats: repeats, extra: ["batch": 64, "steps": 50], isTime: true) {
                sample(predictor, schedule: sched, n: 64, kind: .ddim, steps: 50, from: nil)
            }
        }
        if wanted.contains("cond") {
            // The class-conditional bench-unet-28 (11 class rows, 10 = null): training with 10 % of the
            // labels dropped, and one classifier-free-guided DDPM step (one forward at batch 128, W = 3).
            let net = NetworkFactory.benchUNet28(classes: 10, seed: 1)
            let trainer = try benchTrainer(net, batch: 64, lr: 1e-4, schedule: sched, dataSeed: 7, classes: 10)
            figures["cond.train_b64"] = measure("cond.train_b64", unit: "img/s", per: 64, warmup: 2,
                                                repeats: repeats, extra: ["batch": 64]) { step(trainer) }
            let guided = ClassifierFreeGuided(try ModelPredictor(network: net, schedule: sched), scale: 3)
            figures["cond.cfg_step_b64"] = measure("cond.cfg_step_b64", unit: "s/step", per: 10, warmup: 1,
                                                   repeats: repeats, extra: ["batch": 64, "steps_per_run": 10], isTime: true) {
                sample(guided, schedule: sched, n: 64, kind: .ddpm, steps: nil, from: 9, labels: (0..<64).map { $0 % 10 })
            }
        }
        if wanted.contains("mlp") {
            let net = NetworkFactory.benchMLP2D(seed: 1)
            let trainer = try benchTrainer(net, batch: 256, lr: 1e-3, schedule: sched, dataSeed: 7)
            figures["mlp.train_b256"] = measure("mlp.train_b256", unit: "steps/s", per: 200, warmup: 1,
                                                repeats: repeats, extra: ["batch": 256, "steps": 200]) {
                for _ in 0..<200 { step(trainer) }
            }
            // 10,000 points through 1000 DDPM steps, end to end.
            let predictor = try ModelPredictor(network: net, schedule: sched)
            figures["mlp.sample_10k"] = measure("mlp.sample_10k", unit: "s", per: 1, warmup: 0,
                                                repeats: repeats, extra: ["n": 10000, "steps": 1000], isTime: true) {
                sample(predictor, schedule: sched, n: 10000, kind: .ddpm, steps: nil, from: nil)
            }
        }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let rssMB = Double(usage.ru_maxrss) / 1024
        eprint(String(format: "peak RSS %.0f MB", rssMB))
        eprint("kernels: \(GemmKernel.buildVectorBits)-bit build, OpenBLAS core \(GemmKernel.openBLASCore), GEMM \(GemmKernel.choice.rawValue)")
        let json: [String: Any] = [
            "env": ["tool": "ddpm-bench", "version": toolkitVersion, "threads": threads,
                    "cpus": ProcessInfo.processInfo.activeProcessorCount,
                    // which kernels ran: our build's vector ISA, OpenBLAS's run-time core, the GEMM
                    // chosen from them (GemmKernel), the Winograd tile of the 3x3 convolutions
                    "isa": GemmKernel.buildVectorBits == 512 ? "avx512" : GemmKernel.buildVectorBits == 256 ? "avx2" : "baseline",
                    "openblas_core": GemmKernel.openBLASCore, "gemm": GemmKernel.choice.rawValue,
                    "winograd_tile": WinogradTile.description,
                    "openblas_coretype_env": ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] ?? ""],
            "method": "median of --repeats timed runs after warm-up; a training step is Trainer.trainStep() as in train: "
                + "the batch (t, eps, x_t = sqrt(abar) x0 + sqrt(1 - abar) eps; 10 % null labels for cond), forward, L_simple, "
                + "backward, the gradient norm, AdamW as the peer (lr 1e-4 unet / 1e-3 mlp, weight decay 0.01, no clipping) and "
                + "the EMA of the weights (decay 0.9999), which Trainer always keeps and the peer does not",
            "figures": figures,
            "peak_rss_mb": rssMB,
        ]
        let data = try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
        FileHandle.standardOutput.write(data)
        FileHandle.standardOutput.write("\n".data(using: .utf8)!)
    }
}
