// classify: run a trained classifier (train --classifier) over a data stream and
// write its logits, predicted labels and penultimate features per frame.
import ArgumentParser
import Foundation
import Shared

@main
struct Classify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "classify",
        abstract: "Classify samples with a noise-aware classifier: logits, predicted label, features.",
        discussion: """
        Reads frames with 'x' (F32 [N,C,H,W] or [N,D], the classifier's input shape per sample) and \
        optionally 'y' on stdin. Writes frames of kind 'classified' holding 'logits' F32 [N,K], \
        'pred' I64 [N] (argmax), 'features' F32 [N,W] (the classifier's last hidden layer, for a \
        Frechet distance) and 'y' when the input had it; 'x' is dropped unless --keep-x. Every \
        sample is classified at timestep --t (default 0: clean data). With 'y' present, the \
        accuracy over the whole stream is printed on stderr at the end.

        Example:
          classify --classifier clf.safetensors < test.st > test-logits.st
        """,
        version: toolkitVersion)

    static func main() { runTool() }

    @Option(help: "Classifier file written by train --classifier.") var classifier: String
    @Option(help: "Timestep at which to classify (0 .. T-1).") var t: Int = 0
    @Option(help: "Samples per forward pass.") var batch: Int = 256
    @Flag(help: "Keep 'x' in the output frames.") var keepX = false
    @Flag(help: "No accuracy line on stderr.") var quiet = false

    func validate() throws {
        guard batch > 0 else { throw ValidationError("--batch must be positive") }
    }

    func run() throws {
        let (loaded, net) = try ClassifierRun.load(path: classifier)
        guard t >= 0 && t < loaded.schedule.T else { throw DDPMError("--t \(t) outside 0 ... \(loaded.schedule.T - 1)") }
        let reader = FrameReader()
        let writer = try FrameWriter()
        var correct = 0, labelled = 0
        while let frame = try reader.next() {
            if frame.kind == "schedule" { continue }
            let input = try Batch(frame: frame, index: reader.framesRead, rules: ClassifierRun.rules(for: net))
            var (out, hits) = ClassifierRun.classify(input, net: net, t: t, size: batch, keepX: keepX)
            if let y = input.y { labelled += y.count; correct += hits }
            out.metadata["classifier"] = classifier
            try writer.write(out)
        }
        if reader.framesRead == 0 { throw DDPMError("no frames on stdin") }
        if labelled > 0 && !quiet {
            warn("classify", String(format: "accuracy %.4f (%d of %d)", Double(correct) / Double(labelled), correct, labelled))
        }
    }
}
