// `denoise`: samples from x_T ~ N(0, I), or SDEdit from x_t frames on the input (Meng et al.
// 2022), through the sampling loop of Diffusion/Sampling/Sample.swift. Output: frames of kind
// 'batch' (x, and y when labelled), preceded per batch by its 'trajectory' frames when asked.

public struct SampleJob {
    public let setup: PredictorSetup
    public let options: SamplerOptions
    public let sampleShape: [Int]
    public var count = 16
    public var seed: UInt64 = 0
    public var batch = 256
    public var offset = 0
    public var every = 0
    public var quiet = false

    public init(setup: PredictorSetup, options: SamplerOptions, sampleShape: [Int]) {
        self.setup = setup; self.options = options; self.sampleShape = sampleShape
    }

    /// The variance a sampler uses by default: the model's learned one for DDPM when it has one.
    public static func defaultVariance(setup: PredictorSetup, kind: SamplerKind) -> VarianceKind {
        setup.model != nil && setup.base.learnsVariance && kind == .ddpm ? .learned : .posterior
    }

    /// The sampler settings the predictor brings: its default variance, and for a model read from a
    /// diffusers scheduler config its timestep_spacing, steps_offset and clip_sample (with the eps
    /// of DDIMScheduler's default, use_clipped_model_output = False), so that `denoise --model DIR
    /// --sampler ddim --steps 50` is the pipeline's own loop.
    public static func defaults(setup: PredictorSetup, kind: SamplerKind) -> SamplerDefaults {
        var d = SamplerDefaults(variance: defaultVariance(setup: setup, kind: kind), T: setup.schedule.T)
        if let m = setup.model?.metadata, m[DiffusersDirectory.schedulerKey] != nil {
            d.spacing = m["timestep_spacing"].flatMap(Spacing.init(rawValue:)) ?? .leading
            d.stepsOffset = m["steps_offset"].flatMap { Int($0) } ?? 0
            d.clip = m["clip_sample"] == "true" && m["clip_sample_range"].flatMap { Double($0) } == 1
            d.keepsModelEps = true
        }
        return d
    }

    /// `reader`: the x_t frames for SDEdit (options.from set), nil to sample from noise.
    public func run(reader: FrameReader?, writer: FrameWriter) throws {
        guard count >= 0, batch >= 1, offset >= 0, every >= 0 else {
            throw DDPMError("sample count \(count), batch \(batch), offset \(offset) and trajectory period \(every) must be >= 0 (batch >= 1)")
        }
        let sched = setup.schedule
        var options = self.options
        options.keepsZeroSNRStart = setup.keepsTerminal   // an x0- or v-predictor starts at abar = 0
        let template = try options.makeSolver(schedule: sched)
        let plan = template.plan
        let label = setup.spec.label
        if setup.spec.guidance?.classifier != nil, label == nil, reader == nil {
            throw DDPMError("classifier guidance needs a label (or 'y' in the input frames)")
        }
        if let k = setup.classes, k > 0, label == nil, setup.spec.guidance == nil, reader == nil, !quiet {
            warn("denoise", "no label: sampling the conditional model's null class (unconditional samples)")
        }
        if let dropped = plan.droppedTerminal {
            let why = "eps-prediction cannot give x_0 there"
            warn("denoise", "alpha_bar = 0 at t = \(dropped) (zero terminal SNR): \(why), so sampling starts at t = \(plan.startTimestep) from N(0, I) (\(plan.stepCount) steps)")
        }
        if let from = options.from, plan.startTimestep != from {
            warn("denoise", "spacing \(options.spacing.rawValue) with \(plan.stepCount) steps starts at t = \(plan.startTimestep), not at \(from); the input is treated as x at t = \(plan.startTimestep) (trailing or linspace spacing starts exactly at \(from))")
        }
        var meta = setup.metadata(readsInput: reader != nil)
        meta["tool"] = "denoise"; meta["seed"] = String(seed)
        meta["sampler"] = options.kind.rawValue; meta["steps"] = String(plan.stepCount); meta["spacing"] = options.spacing.rawValue
        meta["eta"] = "\(options.eta)"; meta["variance"] = options.variance.rawValue; meta["clip"] = String(options.clip)
        if options.stepsOffset != 0 { meta["steps_offset"] = String(options.stepsOffset) }
        if options.keepsModelEps { meta["clip_model_eps"] = "true" }
        meta["start_t"] = String(plan.startTimestep); meta["corrector_steps"] = String(options.correctorSteps)
        if let th = options.threshold { meta["dynamic_threshold"] = "\(th.percentile)"; meta["threshold_max"] = "\(th.maxValue)" }
        if options.correctorSteps > 0 { meta["snr"] = "\(options.snr)" }
        if let from = options.from { meta["from"] = String(from) }
        if let d = plan.droppedTerminal { meta["dropped_terminal_t"] = String(d) }
        let corrector = options.makeCorrector(plan: plan)
        let d = sampleShape.reduce(1, *)

        // One batch: the loop, then its trajectory frames and the batch frame.
        func runBatch(x: inout [Float], y: [Int]?, first: Int, streams: [RandomStream]?, progress: Progress, done: Int) throws {
            let b = x.count / d
            var noise = streams ?? Sampling.streams(count: b, seed: seed, firstIndex: first)
            var corr = corrector != nil ? Sampling.streams(count: b, seed: seed, firstIndex: first, purpose: .corrector) : []
            var trajectory: Trajectory? = every > 0 ? Trajectory(every: every) : nil
            var solver = template   // a fresh copy: a multistep solver's history is per batch
            try Sampling.run(x: &x, y: y, predictor: setup.predictor, solver: &solver, noise: &noise, corrector: corrector,
                             correctorNoise: &corr, trajectory: &trajectory, progress: progress, progressBase: done)
            var batchMeta = meta
            batchMeta["first_index"] = String(first)
            for k in trajectory?.frames ?? [] {
                var m = batchMeta
                m["t"] = String(k.t); m["step"] = String(k.step)
                try writer.write(.samples("trajectory", metadata: m, x: k.x, sampleShape: sampleShape, x0: k.x0, y: y))
            }
            try writer.write(.samples("batch", metadata: batchMeta, x: x, sampleShape: sampleShape, y: y))
        }

        if let reader {
            // SDEdit: x_t frames in, denoised frames out; every sample starts at the same timestep.
            var rules = setup.rules(sampleShape: sampleShape)
            rules.T = sched.T
            var index = offset
            var frameNo = 0
            while let f = try reader.next() {
                frameNo += 1
                let input = try Batch(frame: f, index: frameNo, rules: rules)
                if let from = options.from, let bad = input.t?.first(where: { $0 != from }) {
                    throw DDPMError("frame \(frameNo): 't' = \(bad) but the chain starts at \(from); every sample must start at the same timestep")
                }
                let b = input.count
                let y = try setup.labels(frameLabels: input.y, count: b, frame: frameNo)
                let progress = Progress(label: "denoise", total: b * plan.stepCount, quiet: quiet)
                for c in input.chunks(of: batch) {
                    var x = input.samples(c)
                    try runBatch(x: &x, y: y.map { Array($0[c]) }, first: index, streams: nil, progress: progress, done: c.lowerBound * plan.stepCount)
                    index += c.count
                }
            }
            return
        }
        if setup.needsLabels && label == nil { throw DDPMError("guidance needs a label (or 'y' in the input frames)") }
        let progress = Progress(label: "denoise", total: count * plan.stepCount, quiet: quiet)
        var done = 0
        while done < count {
            let m = min(batch, count - done)
            var (x, streams) = Sampling.initialNoise(count: m, dimension: d, seed: seed, firstIndex: offset + done)
            let y = label.map { Array(repeating: $0, count: m) }
            try runBatch(x: &x, y: y, first: offset + done, streams: streams, progress: progress, done: done * plan.stepCount)
            done += m
        }
    }
}
