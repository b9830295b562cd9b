// The option groups of the sampling tools (`denoise`, `guide`): the predictor and the sampler.
// Every cross-flag rule sits in one validate() per group; each group builds typed library values
// (PredictorSpec, SamplerOptions) that never name a flag.
import ArgumentParser

extension SamplerKind: ExpressibleByArgument {}
extension VarianceKind: ExpressibleByArgument {}
extension Spacing: ExpressibleByArgument {}
extension WeightChoice: ExpressibleByArgument {}
extension DecoderKind: ExpressibleByArgument {}

/// The noise predictor of `denoise`: a model file, a predictor process or an analytic one, with
/// classifier-free or classifier guidance.
public struct PredictorArguments: ParsableArguments {
    @Option(help: "Model file written by train, or a diffusers UNet2DModel or pipeline directory: its network predicts eps (and v), or x0 or v; its schedule and data shape are used.")
    public var model: String?
    @Option(help: "Weights of --model: ema or raw.") public var weights: WeightChoice = .ema
    @Option(help: "Predictor command, run once via /bin/sh -c, answering 'eps' (and 'v') frames for 'x','t','y' frames.")
    public var predictor: String?
    @Option(help: "In-process analytic predictor: 'gaussian mu=M sigma=S [v=V] [null=M,S]' or 'mixture mu=M1,M2 sigma=S1,S2 [weight=W1,W2] [v=V] [null=M,S]'.")
    public var analytic: String?
    @Option(help: "Class label for every sample (else 'y' of the input frames).") public var label: Int?
    @Option(help: "Classifier-free guidance scale W: eps_uncond + W (eps_cond - eps_uncond); W = 1 is plain conditional.")
    public var guidance: Double?
    @Option(help: "Guidance rescale phi (Lin et al. 2024, eq. 15-16), with --guidance.") public var guidanceRescale: Double = 0
    @Option(help: "Noise-aware classifier file (train --classifier) for classifier guidance, with --classifier-scale and --label; on the conditional eps of a conditional model, and combined with --guidance when both are given.")
    public var classifier: String?
    @Option(help: "Classifier guidance scale S: eps - sqrt(1 - abar_t) S grad_x log p(y | x_t).") public var classifierScale: Double = 1
    @Option(help: "Seconds to wait for each predictor answer.") public var timeout: Double = 600
    @Option(help: "With --predictor: what its network predicts, eps, x0 or v (each answer names its tensor: 'eps', 'x0' or 'v_pred'); x0 or v lets the chain start at alpha_bar = 0.")
    public var prediction: PredictionType?

    public init() {}

    public func validate() throws {
        guard [model != nil, predictor != nil, analytic != nil].filter({ $0 }).count == 1 else {
            throw ValidationError("give exactly one of --model FILE, --predictor 'CMD' or --analytic 'SPEC'")
        }
        if weights != .ema && model == nil { throw ValidationError("--weights applies to --model") }
        if classifier != nil && model == nil { throw ValidationError("--classifier needs --model") }
        guard classifierScale.isFinite else { throw ValidationError("--classifier-scale must be finite") }
        if let guidance, !guidance.isFinite { throw ValidationError("--guidance must be finite") }
        guard guidanceRescale >= 0 && guidanceRescale <= 1 else { throw ValidationError("--guidance-rescale must lie in [0, 1]") }
        if guidanceRescale != 0 && guidance == nil { throw ValidationError("--guidance-rescale needs --guidance") }
        if let label, label < 0 { throw ValidationError("--label must be >= 0") }
        guard timeout > 0 && timeout.isFinite else { throw ValidationError("--timeout must be > 0") }
        if prediction != nil && predictor == nil { throw ValidationError("--prediction applies to --predictor (a model file and the analytic spec say their own)") }
    }

    /// The typed predictor; `answersV`: a predictor process is asked for v (a learned variance).
    public func spec(answersV: Bool = false) -> PredictorSpec {
        let source: PredictorSource = model.map { .model($0) } ?? predictor.map { .process($0, timeout: timeout) } ?? .analytic(analytic!)
        var s = PredictorSpec(source: source)
        s.weights = weights
        s.label = label
        s.processAnswersV = answersV
        if let prediction { s.processPrediction = prediction }
        switch (guidance, classifier) {
        case let (w?, c?): s.guidance = .combined(scale: w, rescale: guidanceRescale, classifier: c, classifierScale: classifierScale)
        case let (w?, nil): s.guidance = .classifierFree(scale: w, rescale: guidanceRescale)
        case let (nil, c?): s.guidance = .classifier(path: c, scale: classifierScale)
        case (nil, nil): break
        }
        return s
    }

    /// The guidance flags, for commands that refuse them.
    public var guided: Bool { guidance != nil || classifier != nil }
}

/// The reverse chain of `denoise`.
public struct SamplerArguments: ParsableArguments {
    @Option(help: "ddpm (Ho et al. Algorithm 2), ddim (Song et al. eq. 12), euler, euler-ancestral, heun (Karras et al. 2022, Algorithm 1), dpmpp-2m or dpmpp-2m-sde (DPM-Solver++ 2M, Lu et al. 2022, and its SDE variant), unipc (UniPC-2, Zhao et al. 2023); docs/METHODS.md.")
    public var sampler: SamplerKind = .ddpm
    @Option(help: "DDIM eta (0: deterministic, 1: DDPM-like variance); --sampler ddim only.") public var eta: Double = 0
    @Option(help: "DDPM variance: beta, posterior (beta~) or learned (predictor answers v); --sampler ddpm only. Default: learned for a --model with a learned variance, else posterior.")
    public var variance: VarianceKind?
    @Option(help: "Number of sampling steps K (default: every timestep; karras: K sigmas, fewer steps when timesteps coincide).") public var steps: Int?
    @Option(help: "Timestep spacing for --steps: leading, trailing, linspace or karras (Karras et al. 2022, eq. 5, rho = 7) (docs/METHODS.md). Default: leading, or a diffusers model's timestep_spacing.") public var spacing: Spacing?
    @Option(help: "Added to every leading timestep (diffusers' steps_offset: with 1, DDIM 50 visits 1, 21, ..., 981). Default: 0, or a diffusers model's steps_offset where it fits.") public var stepsOffset: Int?
    @Flag(inversion: .prefixedNo, help: "Clip the predicted x_0 to [-1, 1] (the mean/eps are recomputed from it). Default: off, or a diffusers model's clip_sample.") public var clip: Bool?
    @Flag(help: "With --clip or --dynamic-threshold and --sampler ddim: keep the model's eps in the update instead of re-deriving it from the clipped x_0 (diffusers' DDIMScheduler default; on by default for a diffusers model that clips).")
    public var clipModelEps = false
    @Flag(help: "Dynamic thresholding of the predicted x_0 (Saharia et al. 2022): per sample s = clamp(quantile(|x_0|, P), 1, M), x_0 <- clamp(x_0, -s, s) / s. Excludes --clip.")
    public var dynamicThreshold = false
    @Option(help: "With --dynamic-threshold: the percentile P in (0, 1].") public var thresholdPercentile: Double = 0.995
    @Option(help: "With --dynamic-threshold: the largest s, M >= 1 (M = 1 is --clip; diffusers' sample_max_value).") public var thresholdMax: Double = 1
    @Option(help: "Langevin corrector steps after each reverse step (Song et al. 2021, Algorithm 5).") public var correctorSteps: Int = 0
    @Option(help: "Corrector signal-to-noise ratio r.") public var snr: Double = 0.16

    public init() {}

    public func validate() throws {
        if variance != nil && sampler != .ddpm { throw ValidationError("--variance applies to --sampler ddpm (\(sampler.rawValue) has no variance choice)") }
        if sampler != .ddim && eta != 0 { throw ValidationError("--eta applies to --sampler ddim") }
        guard eta >= 0 && eta.isFinite else { throw ValidationError("--eta must be >= 0, got \(eta)") }
        if let steps, steps < 1 { throw ValidationError("--steps must be at least 1, got \(steps)") }
        guard correctorSteps >= 0 && correctorSteps <= 1000 else { throw ValidationError("--corrector-steps must lie in 0 ... 1000") }
        guard snr > 0 && snr.isFinite else { throw ValidationError("--snr must be > 0, got \(snr)") }
        if snr != 0.16 && correctorSteps == 0 { throw ValidationError("--snr applies to --corrector-steps K > 0") }
        if dynamicThreshold && clip == true { throw ValidationError("--clip and --dynamic-threshold exclude each other") }
        if let stepsOffset, stepsOffset < 0 { throw ValidationError("--steps-offset must be >= 0, got \(stepsOffset)") }
        if let spacing, spacing != .leading, stepsOffset ?? 0 != 0 { throw ValidationError("--steps-offset applies to --spacing leading") }
        if clipModelEps && clip != true && !dynamicThreshold { throw ValidationError("--clip-model-eps applies with --clip or --dynamic-threshold") }
        if clipModelEps && sampler != .ddim { throw ValidationError("--clip-model-eps applies to --sampler ddim") }
        if !dynamicThreshold && (thresholdPercentile != 0.995 || thresholdMax != 1) {
            throw ValidationError("--threshold-percentile and --threshold-max apply to --dynamic-threshold")
        }
        guard thresholdPercentile > 0 && thresholdPercentile <= 1 else { throw ValidationError("--threshold-percentile must lie in (0, 1], got \(thresholdPercentile)") }
        guard thresholdMax >= 1 && thresholdMax.isFinite else { throw ValidationError("--threshold-max must be finite and >= 1, got \(thresholdMax)") }
    }

    /// The typed chain; the model's `defaults` where a flag is not given.
    public func options(from: Int?, defaults d: SamplerDefaults) -> SamplerOptions {
        var o = SamplerOptions()
        o.kind = sampler; o.eta = eta; o.variance = variance ?? d.variance; o.steps = steps
        o.spacing = spacing ?? d.spacing; o.from = from
        o.clip = clip ?? (dynamicThreshold ? false : d.clip)
        o.stepsOffset = stepsOffset ?? (o.spacing == .leading && d.offsetFits(from: from, steps: steps) ? d.stepsOffset : 0)
        o.keepsModelEps = clipModelEps || (clip == nil && o.clip && sampler == .ddim && d.keepsModelEps)
        if dynamicThreshold { o.threshold = DynamicThreshold(percentile: thresholdPercentile, maxValue: thresholdMax) }
        o.correctorSteps = correctorSteps; o.snr = snr
        return o
    }
}

/// The variational-bound flags (`denoise nll`, and `denoise --nll`).
public struct BoundArguments: ParsableArguments {
    @Flag(help: "With --nll: print each term of the bound (TSV: t, mean term in bits/dim).") public var terms = false
    @Option(help: "With --nll: estimate the sum over t = 1..T-1 from K timesteps (default: all T-1).") public var nllSteps: Int?
    @Option(help: "With --nll: the t = 0 term, discretized-8bit (images from 8-bit pixels) or gaussian (a density). Default: the model's, else discretized-8bit for [N,C,H,W] and gaussian for [N,D].")
    public var decoder: DecoderKind?
    public init() {}
    public var given: Bool { terms || nllSteps != nil || decoder != nil }
}
