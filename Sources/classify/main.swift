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

    func run() throws {
        guard batch > 0 else { throw DDPMError("--batch must be positive") }
        let loaded = try ModelFile.load(path: classifier)
        guard loaded.metadata["kind"] == "classifier", let net = loaded.network as? any FeatureClassifier else {
            throw DDPMError("\(classifier) is not a classifier (train --classifier writes kind 'classifier')")
        }
        guard t >= 0 && t < loaded.schedule.beta.count else {
            throw DDPMError("--t \(t) outside 0 ... \(loaded.schedule.beta.count - 1)")
        }
        let reader = FrameReader()
        let writer = try FrameWriter()
        var correct = 0, labelled = 0
        while let frame = try reader.next() {
            if frame.kind == "schedule" { continue }
            do {
                let out = try ClassifierRun.classify(frame, net: net, t: t, batch: batch, keepX: keepX)
                if let y = out.frame["y"] { labelled += y.count; correct += out.correct }
                var f = out.frame
                f.metadata["classifier"] = classifier
                try writer.write(f)
            } catch let e as DDPMError { throw DDPMError("frame \(reader.framesRead): \(e.message)") }
        }
        if reader.framesRead == 0 { throw DDPMError("no frames on stdin") }
        if labelled > 0 && !quiet {
            warn("classify", String(format: "accuracy %.4f (%d of %d)", Double(correct) / Double(labelled), correct, labelled))
        }
    }
}
