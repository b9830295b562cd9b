// tensor to-diffusers, from-diffusers: a model file <-> a diffusers directory (Shared/NN/Diffusers).
import ArgumentParser
import Shared

/// What to-diffusers writes.
enum DiffusersLayout: String, CaseIterable, ExpressibleByArgument {
    /// model_index.json, unet/, scheduler/scheduler_config.json
    case pipeline
    /// config.json + diffusion_pytorch_model.safetensors only
    case unet
}

struct ToDiffusers: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "to-diffusers",
        abstract: "Write a U-Net model file as a diffusers directory (UNet2DModel, and a pipeline with its scheduler).",
        discussion: """
        Writes DIR (which must not exist; built in a temporary sibling, then renamed). With --layout \
        pipeline (the default): model_index.json, unet/config.json, unet/diffusion_pytorch_model.safetensors \
        and scheduler/scheduler_config.json (DDPMScheduler, or the scheduler the model was imported with, \
        carrying the model's betas and prediction type); with --layout unet: the UNet2DModel files only. \
        A conditional model's class table keeps its null class as the last row (num_class_embeds = K + 1) \
        unless that row is zero. Networks diffusers cannot express are refused with a reason.

        Examples:
          tensor to-diffusers model.st exported
          tensor to-diffusers --weights raw --layout unet model.st unet-dir
        """)

    @Argument(help: "The model file (a U-Net noise predictor).") var model: String
    @Argument(help: "The directory to create.") var directory: String
    @Option(help: "Weights to export: ema or raw.") var weights: WeightChoice = .ema
    @Option(help: "pipeline (model_index.json, unet/, scheduler/) or unet (the UNet2DModel only).") var layout: DiffusersLayout = .pipeline

    func run() throws {
        let m = try ModelFile.load(path: model, weights: weights)
        try DiffusersDirectory.write(m, weights: weights, to: directory, pipeline: layout == .pipeline)
    }
}

struct FromDiffusers: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "from-diffusers",
        abstract: "Read a diffusers UNet2DModel or pipeline directory into a model file.",
        discussion: """
        DIR holds config.json and diffusion_pytorch_model.safetensors (F32), or is a pipeline directory \
        (model_index.json, unet/, scheduler/scheduler_config.json). The model file gets the weights as \
        both EMA and raw, the scheduler's betas (DDPMScheduler's defaults without one) and its settings \
        in the metadata (prediction, variance_type, clip_sample, timestep_spacing, steps_offset). \
        Every tool's --model also reads such a directory directly. Unsupported config values are \
        errors naming the key.

        Examples:
          tensor from-diffusers ddpm-cifar10-32 -o cifar.st
        """)

    @Argument(help: "The diffusers directory.") var directory: String
    @Option(name: .shortAndLong, help: "The model file to write.") var output: String

    func run() throws {
        try check(DiffusersDirectory.isDirectory(directory), "\(directory) is not a directory")
        let m = try ModelFile.load(path: directory)
        try m.frame.save(path: output)
    }
}
