// The training flags of `train` as one option group: the help text prints TrainConfig's and
// TrainJob's defaults, `validate()` holds the rules between these flags and the bounds of each
// given value (TrainConfig.issues), and `apply` writes them into a TrainConfig -- a fresh one, or
// a checkpoint's, whose values they must match.
import ArgumentParser

extension LossKind: ExpressibleByArgument {}
extension PredictionType: ExpressibleByArgument {}
extension LossWeighting: ExpressibleByArgument {}

public struct TrainingOptions: ParsableArguments {
    public init() {}

    static let base = TrainConfig()

    @Option(help: "Total number of optimizer steps (default \(TrainJob.defaultSteps)); with --resume the total, counting the checkpoint's.")
    public var steps: Int?
    @Option(help: "Examples per step (default \(TrainConfig.unetBatch) for unet, \(TrainConfig.imageClassifierBatch) for a classifier of images, \(TrainConfig.otherBatch) otherwise).")
    public var batch: Int?
    @Option(help: "Peak learning rate of AdamW (default \(TrainConfig.unetLearningRate) for unet, \(TrainConfig.otherLearningRate) otherwise).")
    public var lr: Double?
    @Option(help: "Linear learning-rate warm-up steps (default \(TrainingOptions.base.optimizer.warmup)).")
    public var warmup: Int?
    @Option(help: "Clip the global gradient L2 norm to this (0 = off; default \(TrainingOptions.base.optimizer.clip)).")
    public var clip: Double?
    @Option(help: "EMA decay of the weights (default \(TrainingOptions.base.emaDecay), with (1+n)/(10+n) warm-up).")
    public var ema: Double?
    @Option(help: "AdamW decoupled weight decay (default \(TrainingOptions.base.optimizer.weightDecay)).")
    public var weightDecay: Double?
    @Option(help: "Random seed: weights, data order, t, noise, label dropout (default \(TrainingOptions.base.seed)).")
    public var seed: UInt64?
    @Option(help: "Schedule file (a 'schedule' frame); default: a schedule frame first on the stream, else linear T=1000.")
    public var schedule: String?
    @Option(help: "simple (L_simple) or hybrid (L_simple + lambda L_vlb, learned variance) (default \(TrainingOptions.base.loss.rawValue)).")
    public var loss: LossKind?
    @Option(help: "lambda of the hybrid loss (default \(TrainingOptions.base.vlbWeight)).")
    public var vlbWeight: Double?
    @Option(help: "The network's target: eps (the noise), x0 (the clean sample) or v = sqrt(abar) eps - sqrt(1-abar) x0 (Salimans & Ho 2022); the loss is the MSE on it (default \(TrainingOptions.base.prediction.rawValue)).")
    public var prediction: PredictionType?
    @Option(help: "Per-sample weight of the MSE: uniform, or min-snr (Hang et al. 2023: min(SNR, gamma) on the x0 error, i.e. min(SNR, gamma)/SNR for eps, min(SNR, gamma)/(SNR+1) for v, min(SNR, gamma) for x0; SNR = abar/(1-abar)) (default \(TrainingOptions.base.weighting.rawValue)).")
    public var weighting: LossWeighting?
    @Option(help: "gamma of --weighting min-snr (default \(TrainingOptions.base.snrGamma)).")
    public var snrGamma: Double?
    @Option(help: "Number of classes K (default max(y)+1 when 'y' is present; 0 = unconditional).")
    public var classes: Int?
    @Option(help: "Probability of training with the null class (default \(TrainingOptions.base.pUncond)).")
    public var pUncond: Double?
    @Flag(help: ArgumentHelp(TrainingOptions.classifierHelp))
    public var classifier = false

    static var classifierHelp: String {
        let u = ClassifierConfig.UNetEncoder(), m = ClassifierConfig.MLPEncoder()
        return "Train the noise-aware classifier p(y | x_t, t) for classifier guidance instead (needs 'y'; cross-entropy on x_t, t uniform; kind 'classifier'). "
            + "Images: the U-Net down path (--channels \(u.channels), --mults \(archList(u.mults)), --res-blocks \(u.resBlocks), --groups \(u.groups)) + pooling + linear head; "
            + "vectors or --arch mlp: an MLP over the flattened sample (--width \(m.width), --depth \(m.depth), --temb-dim \(m.tembDim))."
    }

    /// The rules between these flags and the bounds of every given value.
    public func validate() throws {
        if let steps, steps < 0 { throw ValidationError("--steps must be >= 0, got \(steps)") }
        if classifier && loss == .hybrid { throw ValidationError("--loss hybrid does not apply to --classifier (cross-entropy)") }
        if classifier && prediction != nil { throw ValidationError("--prediction does not apply to --classifier (cross-entropy)") }
        if classifier && weighting != nil { throw ValidationError("--weighting does not apply to --classifier (cross-entropy)") }
        var c = TrainConfig()
        if classifier { c.objective = .classifier }
        try apply(to: &c, fixed: false)
        for issue in c.issues {
            if let f = flag(for: issue.key) { throw ValidationError("\(f): \(issue.message)") }
        }
    }

    /// Writes the given flags into `config`. `fixed` (resuming): `config` is a checkpoint's and a
    /// given value must equal its own.
    public func apply(to config: inout TrainConfig, fixed: Bool) throws {
        let s = FlagSetter(fixed: fixed)
        if classifier && config.objective != .classifier {
            if fixed { throw DDPMError("--classifier given, but the checkpoint trains a noise predictor") }
            config.objective = .classifier
        }
        try s.set("--batch", batch, &config.batch)
        try s.set("--lr", lr, &config.optimizer.lr)
        try s.set("--warmup", warmup, &config.optimizer.warmup)
        try s.set("--clip", clip, &config.optimizer.clip)
        try s.set("--ema", ema, &config.emaDecay)
        try s.set("--weight-decay", weightDecay, &config.optimizer.weightDecay)
        try s.set("--seed", seed, &config.seed)
        try s.set("--loss", loss, &config.loss, show: { $0.rawValue })
        try s.set("--vlb-weight", vlbWeight, &config.vlbWeight)
        try s.set("--prediction", prediction, &config.prediction, show: { $0.rawValue })
        try s.set("--weighting", weighting, &config.weighting, show: { $0.rawValue })
        try s.set("--snr-gamma", snrGamma, &config.snrGamma)
        try s.set("--classes", classes, &config.classes)
        try s.set("--p-uncond", pUncond, &config.pUncond)
    }

    /// A built config's bounds (`TrainConfig.issues`), the flag named when it was given.
    public func check(_ config: TrainConfig) throws {
        if let issue = config.issues.first {
            throw DDPMError((flag(for: issue.key).map { "\($0): " } ?? "") + issue.message)
        }
    }

    /// The flag that sets config key `key`, when it was given.
    func flag(for key: String) -> String? {
        let given: [String: (String, Bool)] = [
            "batch": ("--batch", batch != nil), "lr": ("--lr", lr != nil), "warmup": ("--warmup", warmup != nil),
            "clip": ("--clip", clip != nil), "ema_decay": ("--ema", ema != nil), "weight_decay": ("--weight-decay", weightDecay != nil),
            "seed": ("--seed", seed != nil), "loss": ("--loss", loss != nil), "vlb_weight": ("--vlb-weight", vlbWeight != nil),
            "classes": ("--classes", classes != nil), "p_uncond": ("--p-uncond", pUncond != nil),
            "prediction": ("--prediction", prediction != nil), "weighting": ("--weighting", weighting != nil),
            "snr_gamma": ("--snr-gamma", snrGamma != nil)]
        guard let (f, isGiven) = given[key], isGiven else { return nil }
        return f
    }
}
