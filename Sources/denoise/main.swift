// denoise: the reverse process. Starts from x_T ~ N(0, I) (or from x_t frames on
// stdin with --from) and writes samples; all the maths is in Shared/Diffusion.
import ArgumentParser
import Foundation
import Shared

@main
struct DenoiseTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "denoise",
        abstract: "Sample with the reverse diffusion process (DDPM ancestral sampling or DDIM).",
        discussion: """
        Reads: nothing, or with --from/--score frames with 'x' (F32 [N,D] or [N,C,H,W]) and optionally 't', 'y' \
        (a leading schedule frame is used as the schedule). Writes: frames of kind 'batch' with 'x' (and 'y' when \
        conditional); with --every K also frames of kind 'trajectory' (metadata t, step; tensors x = x_t, x0_pred); \
        with --score frames of kind 'score' with 'x', 't', 'score' (and 'y').

        The noise predictor is a trained model file (--model M.safetensors, from train: its schedule and data shape \
        are used; EMA weights unless --weights raw), a process speaking the stream protocol (--predictor 'CMD ARGS', \
        docs/FORMAT-sample.md) or an exact analytic one (--analytic 'gaussian mu=0.5 sigma=0.3'). Sample j uses the \
        random stream (seed, sampler, j): results do not depend on --batch (with a model up to float rounding of its \
        batched GEMMs); --offset K starts at sample K.

        Class-conditional models: --label Y (or 'y' in the --from input) samples class Y; with no label the model is \
        asked for its null class, i.e. samples are drawn UNCONDITIONALLY. --guidance W --label Y: classifier-free \
        guidance (one batched forward per step over the label and the null class). --classifier C --classifier-scale S \
        --label Y: classifier guidance with a noise-aware classifier (train --classifier). A model with a learned \
        variance (train --loss hybrid) samples with it by default (--variance learned).

        --nll: reads data frames ('x' in [-1, 1], e.g. images scaled from 8-bit pixels, optional 'y') and prints the \
        variational bound L_vlb = L_T + sum_t L_{t-1} + L_0 in bits/dim (mean over the examples) on stdout; \
        --terms prints TSV lines 't<TAB>mean term' (t = T: the prior term L_T) and a final 'total' line. \
        --nll-steps K: unbiased stratified estimate of the sum over t = 1..T-1 from one random t in each of K strata \
        (docs/FORMAT-model.md).

        Examples:
          denoise --analytic 'gaussian mu=0.5 sigma=0.3' --shape 2 -n 1000 > samples.st
          denoise --predictor 'guide --analytic "mixture mu=-1,1 sigma=0.2"' --shape 2 --sampler ddim --steps 50 -n 64 > s.st
          noise -t 500 < x0.st | denoise --from 500 --analytic 'gaussian mu=0 sigma=0.5' > edited.st
          denoise --model roll.safetensors -n 10000 --sampler ddim --steps 50 > samples.st
          denoise --model mnist.safetensors --label 3 --guidance 3 -n 64 > threes.st
          denoise --model mnist.safetensors --nll --nll-steps 100 < test.st
        """,
        version: toolkitVersion)

    @Option(help: "Model file written by train: its network predicts eps (and v); its schedule and data shape are used.")
    var model: String?
    @Option(help: "Weights of --model: ema (default) or raw.") var weights: String = "ema"
    @Option(help: "Predictor command, run once via /bin/sh -c, answering 'eps' (and 'v') frames for 'x','t','y' frames.")
    var predictor: String?
    @Option(help: "In-process analytic predictor: 'gaussian mu=M sigma=S [v=V] [null=M,S]' or 'mixture mu=M1,M2 sigma=S1,S2 [weight=W1,W2] [v=V] [null=M,S]'.")
    var analytic: String?
    @Option(help: "Shape of one sample: D or C,H,W (with --from/--score: taken from the input when omitted).")
    var shape: String?
    @Option(name: .shortAndLong, help: "Number of samples.") var n: Int = 16
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(help: "Samples per batch (per output frame). Does not change the samples.") var batch: Int = 256
    @Option(help: "Index of the first sample (for shards: -n 500 --offset 500).") var offset: Int = 0
    @Option(help: "Schedule file (default: a leading schedule frame on stdin, else linear T = 1000).") var schedule: String?
    @Option(help: "ddpm (Ho et al. Algorithm 2) or ddim (Song et al. eq. 12).") var sampler: String = "ddpm"
    @Option(help: "DDIM eta (0: deterministic, 1: DDPM-like variance).") var eta: Double = 0
    @Option(help: "DDPM variance: beta, posterior (beta~) or learned (predictor answers v). Default: learned for a --model with a learned variance, else posterior.")
    var variance: String?
    @Option(help: "Number of sampling steps K (default: every timestep).") var steps: Int?
    @Option(help: "Timestep spacing for --steps: leading, trailing or linspace (docs/FORMAT-sample.md).") var spacing: String = "leading"
    @Flag(help: "Clip the predicted x_0 to [-1, 1] (the mean/eps are recomputed from it).") var clip = false
    @Option(help: "Read x_t frames from stdin and denoise from timestep T (SDEdit).") var from: Int?
    @Option(help: "Class label for every sample (else 'y' of the input frames).") var label: Int?
    @Option(help: "Classifier-free guidance scale W: eps_uncond + W (eps_cond - eps_uncond); W = 1 is plain conditional.")
    var guidance: Double?
    @Option(help: "Guidance rescale phi (Lin et al. 2024, eq. 15-16), with --guidance.") var guidanceRescale: Double = 0
    @Option(help: "Noise-aware classifier file (train --classifier) for classifier guidance, with --classifier-scale and --label.")
    var classifier: String?
    @Option(help: "Classifier guidance scale S: eps - sqrt(1 - abar_t) S grad_x log p(y | x_t).") var classifierScale: Double = 1
    @Flag(help: "Print the variational bound (bits/dim) of the data frames on stdin instead of sampling.") var nll = false
    @Flag(help: "With --nll: print each term of the bound (TSV: t, mean term in bits/dim).") var terms = false
    @Option(help: "With --nll: estimate the sum over t = 1..T-1 from K timesteps (default: all T-1).") var nllSteps: Int?
    @Option(help: "With --nll: the t = 0 term, discretized-8bit (images from 8-bit pixels) or gaussian (a density). Default: the model's, else discretized-8bit for [N,C,H,W] and gaussian for [N,D].")
    var decoder: String?
    @Option(help: "Also write the trajectory (x_t and x0_pred) every K steps.") var every: Int = 0
    @Flag(help: "Write the score -eps/sqrt(1 - abar_t) of the input frames (at --from T or their 't') instead of sampling.")
    var score = false
    @Option(help: "Langevin corrector steps after each reverse step (Song et al. 2021, Algorithm 5).") var correctorSteps: Int = 0
    @Option(help: "Corrector signal-to-noise ratio r.") var snr: Double = 0.16
    @Option(help: "Seconds to wait for each predictor answer.") var timeout: Double = 600
    @Flag(help: "No progress on stderr.") var quiet = false

    func run() throws {
        guard [model != nil, predictor != nil, analytic != nil].filter({ $0 }).count == 1 else {
            throw DDPMError("give exactly one of --model FILE, --predictor 'CMD' or --analytic 'SPEC'")
        }
        guard let weightChoice = WeightChoice(rawValue: weights) else { throw DDPMError("--weights must be ema or raw, got '\(weights)'") }
        if weights != "ema" && model == nil { throw DDPMError("--weights applies to --model") }
        if nll && (from != nil || score) { throw DDPMError("--nll excludes --from and --score") }
        if (terms || nllSteps != nil || decoder != nil) && !nll { throw DDPMError("--terms, --nll-steps and --decoder apply to --nll") }
        if nll && (guidance != nil || classifier != nil) { throw DDPMError("--nll is the bound of the model itself: it excludes --guidance and --classifier") }
        if classifier != nil && guidance != nil { throw DDPMError("--classifier and --guidance exclude each other") }
        if classifier != nil && model == nil { throw DDPMError("--classifier needs --model") }
        guard classifierScale.isFinite else { throw DDPMError("--classifier-scale must be finite") }
        if let guidance, !guidance.isFinite { throw DDPMError("--guidance must be finite") }
        guard n >= 0 else { throw DDPMError("-n must be >= 0") }
        guard batch >= 1 else { throw DDPMError("--batch must be >= 1") }
        guard offset >= 0 else { throw DDPMError("--offset must be >= 0") }
        guard every >= 0 else { throw DDPMError("--every must be >= 0") }
        guard timeout > 0 else { throw DDPMError("--timeout must be > 0") }
        guard guidanceRescale >= 0 && guidanceRescale <= 1 else { throw DDPMError("--guidance-rescale must lie in [0, 1]") }
        if guidanceRescale != 0 && guidance == nil { throw DDPMError("--guidance-rescale needs --guidance") }
        if let label, label < 0 { throw DDPMError("--label must be >= 0") }
        guard let samplerKind = SamplerKind(rawValue: sampler) else { throw DDPMError("--sampler must be ddpm or ddim, got '\(sampler)'") }
        if let variance, VarianceKind(rawValue: variance) == nil { throw DDPMError("--variance must be beta, posterior or learned, got '\(variance)'") }
        guard let spacingKind = Spacing(rawValue: spacing) else { throw DDPMError("--spacing must be leading, trailing or linspace, got '\(spacing)'") }
        if samplerKind == .ddim && variance == "learned" { throw DDPMError("--variance learned applies to --sampler ddpm (DDIM uses eta)") }
        if samplerKind == .ddpm && eta != 0 { throw DDPMError("--eta applies to --sampler ddim") }

        let readsInput = from != nil || score || nll
        if nll && isatty(0) != 0 { throw DDPMError("--nll reads data frames on stdin (e.g. denoise --model M --nll < test.st)") }
        let reader: FrameReader? = readsInput ? FrameReader() : nil
        var loaded: LoadedModel? = nil
        let sched: Schedule
        if let model {
            if schedule != nil { throw DDPMError("--schedule: the model file fixes the schedule it was trained with") }
            let lm = try ModelFile.load(path: model, weights: weightChoice)
            loaded = lm
            sched = lm.schedule
            if let reader, let first = try reader.next() {
                if first.kind == "schedule" {
                    // A schedule frame on the input must be the model's.
                    let s = try Schedule(frame: first)
                    guard s.beta == sched.beta else {
                        throw DDPMError("the schedule frame on stdin (T = \(s.T)) differs from the schedule of \(model) (T = \(sched.T))")
                    }
                } else {
                    reader.pushBack(first)
                }
            }
        } else {
            sched = try resolveSchedule(path: schedule, reader: reader)
        }
        if let from, from < 0 || from >= sched.T {
            throw DDPMError("--from \(from) is outside 0 ... \(sched.T - 1) (the schedule has T = \(sched.T))")
        }
        var sampleShape = try shape.map(parseSampleShape)
        if let net = loaded?.network {
            if let sampleShape, sampleShape != net.inputShape {
                throw DDPMError("--shape \(shape!) differs from the model's data shape \(net.inputShape.map(String.init).joined(separator: ","))")
            }
            sampleShape = net.inputShape
        }
        if sampleShape == nil {
            guard let reader, let first = try reader.next() else {
                throw DDPMError(readsInput ? "no input frames on stdin" : "--shape D or C,H,W is required")
            }
            let x = try first.require("x")
            guard x.shape.count == 2 || x.shape.count == 4 else { throw DDPMError("input 'x' must be [N,D] or [N,C,H,W], got \(x.shape)") }
            sampleShape = Array(x.shape.dropFirst())
            reader.pushBack(first)
        }
        let shp = sampleShape!

        var base: EpsPredictor
        var modelClasses: Int? = nil
        if let loaded, let model {
            let mp = try ModelPredictor(model: loaded, path: model)
            modelClasses = mp.classes
            if variance == "learned" && !mp.learnsVariance {
                throw DDPMError("--variance learned needs a model with a learned variance (train --loss hybrid); \(model) has loss=\(loaded.metadata["loss"] ?? "simple")")
            }
            if let label {
                guard mp.classes > 0 else { throw DDPMError("--label: \(model) is an unconditional model (trained without labels)") }
                guard label < mp.classes else { throw DDPMError("--label \(label) outside the model's classes 0 ... \(mp.classes - 1)") }
            }
            if guidance != nil && mp.classes == 0 { throw DDPMError("--guidance needs a class-conditional model; \(model) is unconditional") }
            base = mp
        } else if let predictor {
            base = try ExternalPredictor(command: predictor, sampleShape: shp, learnsVariance: variance == "learned", timeout: timeout)
        } else {
            base = try GaussianMixturePredictor.parse(analytic!, schedule: sched, sampleShape: shp)
        }
        let varianceKind = VarianceKind(rawValue: variance ?? (model != nil && base.learnsVariance && samplerKind == .ddpm ? "learned" : "posterior"))!
        let external = base as? ExternalPredictor
        defer { external?.close() }
        var classifierGradient: ClassifierGradient? = nil
        if let classifier {
            let c = try ClassifierGradient(model: try ModelFile.load(path: classifier, weights: weightChoice), path: classifier)
            guard c.network.inputShape == shp else { throw DDPMError("the classifier's input shape \(c.network.inputShape) differs from the model's \(shp)") }
            guard c.schedule.beta == sched.beta else { throw DDPMError("\(classifier) was trained with another schedule than the model") }
            if let label, label >= c.classes { throw DDPMError("--label \(label) outside the classifier's classes 0 ... \(c.classes - 1)") }
            classifierGradient = c
            base = ClassifierGuided(base, schedule: sched, scale: classifierScale, gradient: { try c.gradient(x: $0, t: $1, y: $2) })
        }
        if let guidance { base = ClassifierFreeGuided(base, scale: guidance, rescale: guidanceRescale) }

        var meta = ["tool": "denoise", "predictor": base.describe, "seed": String(seed), "T": String(sched.T),
                    "schedule": sched.kind.rawValue]
        if let model, let loaded {
            meta["model"] = model; meta["model_summary"] = loaded.summary; meta["weights"] = weights
            if modelClasses == 0 || (label == nil && !readsInput) { meta["conditioning"] = modelClasses == 0 ? "unconditional model" : "null class (unconditional)" }
        }
        if let classifier { meta["classifier"] = classifier; meta["classifier_scale"] = "\(classifierScale)"; meta["guidance_kind"] = "classifier" }
        if let guidance { meta["guidance"] = "\(guidance)"; meta["guidance_rescale"] = "\(guidanceRescale)"; meta["guidance_kind"] = "classifier-free" }
        if let label { meta["label"] = String(label) }
        if classifierGradient != nil && label == nil && !readsInput { throw DDPMError("--classifier needs --label (or 'y' in --from input frames)") }
        if let mc = modelClasses, mc > 0, label == nil, guidance == nil, classifier == nil, !readsInput, !quiet {
            warn("denoise", "no --label: sampling the conditional model's null class (unconditional samples)")
        }

        if nll {
            try runBound(reader: reader!, predictor: base, schedule: sched, shape: shp, variance: varianceKind,
                         modelDecoder: loaded?.metadata["decoder"])
            return
        }
        let writer = try FrameWriter()

        if score {
            try writeScores(reader: reader!, writer: writer, predictor: base, schedule: sched, shape: shp, meta: meta)
            return
        }

        var opts = SamplerOptions()
        opts.kind = samplerKind; opts.eta = eta; opts.variance = varianceKind; opts.steps = steps
        opts.spacing = spacingKind; opts.from = from; opts.clip = clip
        opts.correctorSteps = correctorSteps; opts.snr = snr
        let s = try Sampler(schedule: sched, options: opts)
        if let dropped = s.droppedTerminal {
            warn("denoise", "alpha_bar = 0 at t = \(dropped) (zero terminal SNR): eps-prediction cannot give x_0 there, so sampling starts at t = \(s.startTimestep) from N(0, I) (\(s.stepCount) steps)")
        }
        if let from, s.startTimestep != from {
            warn("denoise", "--spacing \(spacing) with --steps \(s.stepCount) starts at t = \(s.startTimestep), not at --from \(from); the input is treated as x at t = \(s.startTimestep) (use --spacing trailing or linspace to start exactly at \(from))")
        }
        meta["sampler"] = sampler; meta["steps"] = String(s.stepCount); meta["spacing"] = spacing
        meta["eta"] = "\(eta)"; meta["variance"] = varianceKind.rawValue; meta["clip"] = String(clip)
        meta["start_t"] = String(s.startTimestep); meta["corrector_steps"] = String(correctorSteps)
        if correctorSteps > 0 { meta["snr"] = "\(snr)" }
        if let from { meta["from"] = String(from) }
        if let d = s.droppedTerminal { meta["dropped_terminal_t"] = String(d) }

        let d = shp.reduce(1, *)
        func runBatch(x: inout [Float], y: [Int]?, first: Int, streams: [RandomStream]?, progress: Shared.Progress, done: Int) throws {
            let b = x.count / d
            var noise = streams ?? Sampler.streams(count: b, seed: seed, firstIndex: first)
            var corr = correctorSteps > 0 ? Sampler.streams(count: b, seed: seed, firstIndex: first, purpose: .corrector) : []
            try s.run(x: &x, y: y, predictor: base, noise: &noise, correctorNoise: &corr, every: every, trajectory: { step, t, xt, x0 in
                var f = Frame(metadata: meta)
                f.kind = "trajectory"
                f.metadata["t"] = String(t); f.metadata["step"] = String(step); f.metadata["first_index"] = String(first)
                f["x"] = Tensor(xt, shape: [b] + shp)
                f["x0_pred"] = Tensor(x0, shape: [b] + shp)
                if let y { f["y"] = Tensor(y.map { Int64($0) }, shape: [b]) }
                try writer.write(f)
            }, progress: { k in progress.update(done + k * b, unit: "sample-steps") })
            var f = Frame(metadata: meta)
            f.kind = "batch"
            f.metadata["first_index"] = String(first)
            f["x"] = Tensor(x, shape: [b] + shp)
            if let y { f["y"] = Tensor(y.map { Int64($0) }, shape: [b]) }
            try writer.write(f)
        }

        if let reader {
            // SDEdit: x_t frames in, denoised frames out.
            var index = offset
            var frameNo = 0
            while let f = try reader.next() {
                frameNo += 1
                let xt = try f.require("x")
                guard xt.dtype == .f32 || xt.dtype == .f64 else { throw DDPMError("input frame \(frameNo): 'x' must be F32, got \(xt.dtype.rawValue)") }
                guard xt.shape.count >= 1, Array(xt.shape.dropFirst()) == shp else {
                    throw DDPMError("input frame \(frameNo): 'x' has shape \(xt.shape), expected [N,\(shp.map(String.init).joined(separator: ","))]")
                }
                let b = xt.shape[0]
                if let tt = f["t"] {
                    let ts = try tt.integers()
                    guard ts.count == b else { throw DDPMError("input frame \(frameNo): 't' has \(ts.count) values for \(b) samples") }
                    if let bad = ts.first(where: { Int($0) != from! }) {
                        throw DDPMError("input frame \(frameNo): 't' = \(bad) but --from \(from!); denoise starts every sample at the same timestep")
                    }
                }
                let y = try labels(frame: f, count: b, frameNo: frameNo, predictor: base)
                let all = xt.floats
                var start = 0
                let progress = Shared.Progress(label: "denoise", total: b * s.stepCount, quiet: quiet)
                while start < b {
                    let m = min(batch, b - start)
                    var x = Array(all[start * d ..< (start + m) * d])
                    try runBatch(x: &x, y: y.map { Array($0[start ..< start + m]) }, first: index, streams: nil, progress: progress, done: start * s.stepCount)
                    index += m; start += m
                }
            }
            return
        }

        if guidance != nil && label == nil { throw DDPMError("--guidance needs --label (or 'y' in --from input frames)") }
        if modelClasses == 0, label != nil { throw DDPMError("--label given for an unconditional model") }
        let progress = Shared.Progress(label: "denoise", total: n * s.stepCount, quiet: quiet)
        var done = 0
        while done < n {
            let m = min(batch, n - done)
            var (x, streams) = Sampler.initialNoise(count: m, dimension: d, seed: seed, firstIndex: offset + done)
            let y = label.map { Array(repeating: $0, count: m) }
            try runBatch(x: &x, y: y, first: offset + done, streams: streams, progress: progress, done: done * s.stepCount)
            done += m
        }
    }

    /// Labels for an input frame: --label, else the frame's 'y'. A bare unconditional model ignores the
    /// frame's 'y' (labelled data sets such as MNIST streams carry one); --label on it is refused earlier.
    func labels(frame f: Frame, count b: Int, frameNo: Int, predictor: EpsPredictor) throws -> [Int]? {
        if let label { return Array(repeating: label, count: b) }
        if let m = predictor as? ModelPredictor, m.classes == 0 { return nil }
        guard let yt = f["y"] else {
            if guidance != nil || classifier != nil { throw DDPMError("input frame \(frameNo): --guidance needs labels: give --label or 'y' in the frames") }
            return nil
        }
        let y = try yt.integers()
        guard y.count == b else { throw DDPMError("input frame \(frameNo): 'y' has \(y.count) values for \(b) samples") }
        if let bad = y.first(where: { $0 < 0 }) { throw DDPMError("input frame \(frameNo): label \(bad) is negative") }
        return y.map { Int($0) }
    }

    /// --nll: the variational bound of every example on stdin (Likelihood.swift), printed as text.
    func runBound(reader: FrameReader, predictor: EpsPredictor, schedule: Schedule, shape shp: [Int], variance: VarianceKind,
                  modelDecoder: String?) throws {
        let dec: DecoderKind
        if let decoder {
            guard let d = DecoderKind(rawValue: decoder) else { throw DDPMError("--decoder must be discretized-8bit or gaussian, got '\(decoder)'") }
            dec = d
        } else if let md = modelDecoder, let d = DecoderKind(rawValue: md) {
            dec = d
        } else {
            dec = shp.count == 3 ? .discretized8bit : .gaussian
        }
        let bound = try VariationalBound(schedule: schedule, predictor: predictor, variance: variance, decoder: dec, steps: nllSteps)
        let d = shp.reduce(1, *)
        var perExample: [Double] = []
        var termSums: [Int: Double] = [:]
        var priorSum = 0.0
        var index = offset, frameNo = 0
        while let f = try reader.next() {
            frameNo += 1
            if f.kind == "schedule" { throw DDPMError("input frame \(frameNo): a schedule frame inside the data (only a leading one is allowed)") }
            let xt = try f.require("x")
            guard xt.dtype == .f32 || xt.dtype == .f64 else { throw DDPMError("input frame \(frameNo): 'x' must be F32, got \(xt.dtype.rawValue)") }
            guard xt.shape.count >= 1, Array(xt.shape.dropFirst()) == shp else {
                throw DDPMError("input frame \(frameNo): 'x' has shape \(xt.shape), expected [N,\(shp.map(String.init).joined(separator: ","))]")
            }
            let b = xt.shape[0]
            let all = xt.floats
            if let bad = all.first(where: { !$0.isFinite }) { throw DDPMError("input frame \(frameNo): 'x' holds a non-finite value (\(bad))") }
            if dec == .discretized8bit, let bad = all.first(where: { $0 < -1.0001 || $0 > 1.0001 }) {
                throw DDPMError("input frame \(frameNo): 'x' = \(bad) outside [-1, 1]; the discretized-8bit decoder needs data scaled from 8-bit pixels to [-1, 1]")
            }
            let y = try labels(frame: f, count: b, frameNo: frameNo, predictor: predictor)
            let progress = Shared.Progress(label: "denoise --nll", total: b * bound.evaluations, quiet: quiet)
            var start = 0
            while start < b {
                let m = min(batch, b - start)
                let r = try bound.evaluate(x0: Array(all[start * d ..< (start + m) * d]), y: y.map { Array($0[start ..< start + m]) },
                                           seed: seed, firstIndex: index, progress: { k in progress.update(start * bound.evaluations + k * m, unit: "example-steps") })
                perExample += r.perExample
                for (t, v) in r.termSums { termSums[t, default: 0] += v }
                priorSum += r.priorSum
                index += m; start += m
            }
        }
        guard !perExample.isEmpty else { throw DDPMError("--nll: no examples on stdin") }
        let n = Double(perExample.count)
        let mean = perExample.reduce(0, +) / n
        let sd = (perExample.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / max(n - 1, 1)).squareRoot()
        var out = ""
        if terms {
            out += "t\tbits_per_dim\n"
            for t in termSums.keys.sorted() { out += "\(t)\t" + String(format: "%.8g", termSums[t]! / n) + "\n" }
            out += "\(schedule.T)\t" + String(format: "%.8g", priorSum / n) + "\n"
            out += "total\t" + String(format: "%.8g", mean) + "\n"
        } else {
            out += String(format: "%.6f", mean) + "\n"
        }
        FileHandle.standardOutput.write(out.data(using: .utf8)!)
        if !quiet {
            let what = bound.strata.count == schedule.T - 1 ? "all \(schedule.T - 1) KL terms" : "\(bound.strata.count) strata of the \(schedule.T - 1) KL terms (stratified estimate)"
            warn("denoise", "L_vlb = " + String(format: "%.4f", mean) + " bits/dim over \(perExample.count) examples (standard error " +
                 String(format: "%.4f", sd / n.squareRoot()) + "; \(what), variance \(variance.rawValue), decoder \(dec.rawValue))")
        }
    }

    func writeScores(reader: FrameReader, writer: FrameWriter, predictor: EpsPredictor, schedule: Schedule, shape shp: [Int], meta: [String: String]) throws {
        var frameNo = 0
        while let f = try reader.next() {
            frameNo += 1
            let xt = try f.require("x")
            guard xt.shape.count >= 1, Array(xt.shape.dropFirst()) == shp else {
                throw DDPMError("input frame \(frameNo): 'x' has shape \(xt.shape), expected [N,\(shp.map(String.init).joined(separator: ","))]")
            }
            let b = xt.shape[0]
            var t: [Int]
            if let tt = f["t"] {
                t = try tt.integers().map { Int($0) }
                guard t.count == b else { throw DDPMError("input frame \(frameNo): 't' has \(t.count) values for \(b) samples") }
                if let from, let bad = t.first(where: { $0 != from }) { throw DDPMError("input frame \(frameNo): 't' = \(bad) but --from \(from)") }
            } else if let from {
                t = Array(repeating: from, count: b)
            } else {
                throw DDPMError("input frame \(frameNo): no 't' tensor; give --from T")
            }
            if let bad = t.first(where: { $0 < 0 || $0 >= schedule.T }) { throw DDPMError("input frame \(frameNo): t = \(bad) outside 0 ... \(schedule.T - 1)") }
            let y = try labels(frame: f, count: b, frameNo: frameNo, predictor: predictor)
            let sc = try Sampler.score(x: xt.floats, t: t, y: y, predictor: predictor, schedule: schedule)
            var out = Frame(metadata: meta)
            out.kind = "score"
            out["x"] = xt
            out["t"] = Tensor(t.map { Int64($0) }, shape: [b])
            if let y { out["y"] = Tensor(y.map { Int64($0) }, shape: [b]) }
            out["score"] = Tensor(sc, shape: xt.shape)
            try writer.write(out)
        }
    }

    static func main() { runTool() }
}
