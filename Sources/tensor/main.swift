// tensor: data in and out of the stream format (PNG, IDX, NPY, raw, toy sets), `info` on any
// stream, and scatter plots. Each subcommand only turns its options into typed values and calls
// a job of Shared/IO (Import.swift, Export.swift, Stats.swift, Reshape.swift); flag rules are
// checked in its validate(). The subcommands: ImportCommands.swift (from-*), ExportCommands.swift
// (to-png, to-npy), PointCommands.swift (toy, scatter), StreamCommands.swift (info, reshape),
// DiffusersCommands.swift (to-diffusers, from-diffusers).
import ArgumentParser
import Shared

@main
struct TensorTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tensor",
        abstract: "Convert data to and from tensor streams, describe streams, plot 2-D points.",
        discussion: """
        Streams are safetensors frames back to back (docs/FORMAT.md); data frames have kind 'batch' \
        and hold x (F32, [N,C,H,W] images in [-1,1] or [N,D] vectors) and optionally y (I64 labels).

        Examples:
          tensor from-idx train-images.gz train-labels.gz > mnist.st
          tensor toy swissroll -n 10000 --seed 1 > roll.st
          tensor info < mnist.st
          tensor to-png --grid 8x8 < samples.st > grid.png
        """,
        version: toolkitVersion,
        subcommands: [FromPNG.self, ToPNG.self, FromIDX.self, FromNPY.self, ToNPY.self, FromRaw.self,
                      Info.self, Toy.self, Scatter.self, ReshapeCommand.self,
                      ToDiffusers.self, FromDiffusers.self])

    static func main() { runTool() }
}

/// A flag rule of validate(): unless `ok`, one line `tensor: message` and exit status 1.
func check(_ ok: Bool, _ message: @autoclosure () -> String) throws {
    if !ok { throw DDPMError(message()) }
}

// Typed option values. A value that cannot be read at all is ArgumentParser's error; one that
// reads but breaks a rule (a zero size) is validate()'s. runTool prints either as one line.

/// An element type as the command line spells it (any case); DType is the file format's F32 ... U8.
enum ElementType: String, CaseIterable, ExpressibleByArgument {
    case f32, f64, i64, i32, u8

    init?(argument: String) { self.init(rawValue: argument.lowercased()) }

    var dtype: DType {
        switch self {
        case .f32: return .f32
        case .f64: return .f64
        case .i64: return .i64
        case .i32: return .i32
        case .u8: return .u8
        }
    }
}

extension ToyDataset: ExpressibleByArgument {}

extension GridSize: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
}

extension SampleDims: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
}
