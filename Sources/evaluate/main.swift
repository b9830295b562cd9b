// evaluate: sample-quality figures of classified sample sets (the output of `classify`) against
// a classified reference set of real data: as-labelled fraction, Frechet distances, the
// Inception-score analogue, precision and recall. The figures are in Shared/Metrics.
import ArgumentParser
import Foundation
import Shared

@main
struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate",
        abstract: "Sample-quality figures of classified samples against classified real data.",
        discussion: """
        Reads streams of 'classified' frames, the output of classify ('features' [N,W], 'logits' \
        [N,K], 'pred' [N], optional 'y' [N]): the sample sets from the files given (stdin when \
        none, or '-') and the reference, real data classified by the same classifier, from \
        --reference. Prints one line per figure and a column per set: n; as-labelled, the \
        fraction with pred = y (when the set has 'y'); fd-features and fd-logits, the Frechet \
        distance |mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2) between Gaussians fitted \
        to the set and to the reference (Heusel et al. 2017); is, exp(E KL(p(y|x) || p(y))) from \
        the logits; precision and recall, the fractions of samples inside the reference's k-NN \
        balls and of reference points inside the samples' (Kynkaanniemi et al. 2019), on the \
        features. --json prints the same as one JSON object.

        FD is biased upwards at small n (by an amount that grows with W / n) and precision and \
        recall depend on n too: compare only sets of equal n (the MNIST recipe uses n = 10,000), \
        and give --floor, a second real set (e.g. the classified training data), to see the same \
        figures for its first n samples: what real data score at that n. Precision and \
        recall cost O(n^2 W): a few seconds at n = 10,000.

        Example:
          classify --classifier clf.st < samples.st | evaluate --reference test.cls.st --floor train.cls.st
        """,
        version: toolkitVersion)

    static func main() { runTool() }

    @Argument(help: ArgumentHelp("Classified sample streams, a column each (default: stdin).", valueName: "samples")) var samples: [String] = []
    @Option(help: ArgumentHelp("Classified real data: the reference set.", valueName: "file")) var reference: String
    @Option(help: ArgumentHelp("Classified real data other than the reference; its first n samples (n of the sets) give the floor column.", valueName: "file")) var floor: String?
    @Option(help: ArgumentHelp("Use the first N samples of each set.", valueName: "N")) var limit: Int?
    @Option(name: [.customShort("k"), .customLong("neighbours")], help: ArgumentHelp("k of the k-NN balls for precision and recall.", valueName: "k")) var k: Int = 3
    @Flag(help: "Print the figures as one JSON object.") var json = false

    func validate() throws {
        if let limit, limit < 1 || limit > ClassifiedSet.maxSamples {
            throw ValidationError("--limit must be in 1 ... \(ClassifiedSet.maxSamples)")
        }
        guard k >= 1 && k <= 256 else { throw ValidationError("-k must be in 1 ... 256") }
    }

    func run() throws {
        let ref = try QualityReference(ClassifiedSet.read(FrameReader(pathOrStdin: reference)), k: k)
        var sets: [ClassifiedSet] = []
        for path in samples.isEmpty ? ["-"] : samples {
            sets.append(try ClassifiedSet.read(FrameReader(pathOrStdin: path), limit: limit))
        }
        var figures = try sets.map { try ref.figures(for: $0) }
        var columns = sets.map(\.name)
        if let floor {
            let n = sets[0].count
            if let other = sets.first(where: { $0.count != n }) {
                throw DDPMError("\(sets[0].name) has \(n) samples, \(other.name) \(other.count): one floor needs sets of equal n")
            }
            let real = try ClassifiedSet.read(FrameReader(pathOrStdin: floor), limit: n)
            guard real.count == n else {
                throw DDPMError("\(real.name) has \(real.count) samples, fewer than the \(n) of the sets: the floor needs as many")
            }
            figures.append(try ref.figures(for: real))
            columns.append("floor")
        }
        let out = TextOutput()
        if json {
            try out.write(jsonText(ref, columns, figures, floor: floor) + "\n")
        } else {
            try out.write(table(ref, columns, figures))
        }
    }

    func table(_ ref: QualityReference, _ columns: [String], _ figures: [QualityFigures]) -> String {
        func fraction(_ v: Double?) -> String { v.map { String(format: "%.4f", $0) } ?? "-" }
        func number(_ v: Double) -> String { String(format: "%.6g", v) }
        let rows: [(String, (QualityFigures) -> String)] = [
            ("n", { String($0.count) }),
            ("as-labelled", { fraction($0.asLabelled) }),
            ("fd-features", { number($0.fdFeatures) }),
            ("fd-logits", { number($0.fdLogits) }),
            ("is", { number($0.inceptionScore) }),
            ("precision", { fraction($0.precision) }),
            ("recall", { fraction($0.recall) }),
        ]
        // Columns by file name (the paths are in the JSON); the reference line keeps its path.
        var cells = [["figure"] + columns.map { ($0 as NSString).lastPathComponent.escapedForTerminal }]
        for (name, f) in rows { cells.append([name] + figures.map(f)) }
        let widths = (0..<cells[0].count).map { c in cells.map { $0[c].count }.max()! }
        var text = "# reference \(ref.set.name.escapedForTerminal): n = \(ref.set.count)"
        if let a = ref.set.asLabelled { text += String(format: ", classifier accuracy %.4f", a) }
        text += ", k = \(ref.k)" + (floor.map { ", floor: first n of \($0.escapedForTerminal)" } ?? "") + "\n"
        for row in cells {
            var line = ""
            for (c, cell) in row.enumerated() {
                line += c == 0 ? cell + String(repeating: " ", count: widths[0] - cell.count)
                               : "  " + String(repeating: " ", count: widths[c] - cell.count) + cell
            }
            text += line + "\n"
        }
        return text
    }

    func jsonText(_ ref: QualityReference, _ columns: [String], _ figures: [QualityFigures], floor: String?) -> String {
        func num(_ v: Double?) -> String { v.flatMap { $0.isFinite ? "\($0)" : nil } ?? "null" }
        func object(_ name: String, _ f: QualityFigures) -> String {
            "{\"name\": \(JSON.quote(name)), \"n\": \(f.count), \"as_labelled\": \(num(f.asLabelled)), "
                + "\"fd_features\": \(num(f.fdFeatures)), \"fd_logits\": \(num(f.fdLogits)), \"is\": \(num(f.inceptionScore)), "
                + "\"precision\": \(num(f.precision)), \"recall\": \(num(f.recall))}"
        }
        let count = floor == nil ? figures.count : figures.count - 1
        var s = "{\"k\": \(ref.k), \"reference\": {\"name\": \(JSON.quote(ref.set.name)), \"n\": \(ref.set.count), "
            + "\"accuracy\": \(num(ref.set.asLabelled))}, \"sets\": ["
        s += (0..<count).map { object(columns[$0], figures[$0]) }.joined(separator: ", ") + "]"
        if let floor { s += ", \"floor\": " + object(floor, figures[count]) }
        return s + "}"
    }
}
