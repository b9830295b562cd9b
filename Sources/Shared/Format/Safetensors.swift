// The safetensors record, the unit of every stream (docs/FORMAT.md):
//   8 bytes  little-endian UInt64 N, the header length
//   N bytes  UTF-8 JSON: {"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [b, e]}, ...}
//   data     the tensors' bytes, offsets relative to the end of the header
// Readers here are strict: offsets must tile the data exactly, in order.

/// Largest header we accept (the safetensors reference limit is 100 MB).
public let maxHeaderBytes = 100_000_000

/// Where one tensor sits in the data section, as parsed from a header.
public struct TensorEntry: Sendable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    public var begin: Int
    public var end: Int
}

public enum Safetensors {
    /// The JSON header for a frame, padded with spaces to a multiple of 8 bytes
    /// so that the data section stays aligned (as the reference writer does).
    public static func header(for frame: Frame) -> [UInt8] {
        var parts: [String] = []
        if !frame.metadata.isEmpty {
            let meta = frame.metadata.keys.sorted().map { "\(JSON.quote($0)):\(JSON.quote(frame.metadata[$0]!))" }
            parts.append("\"__metadata__\":{\(meta.joined(separator: ","))}")
        }
        var offset = 0
        for (name, t) in frame.tensors {
            let end = offset + t.byteCount
            let shape = t.shape.map(String.init).joined(separator: ",")
            parts.append("\(JSON.quote(name)):{\"dtype\":\"\(t.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(end)]}")
            offset = end
        }
        var bytes = Array("{\(parts.joined(separator: ","))}".utf8)
        while (8 + bytes.count) % 8 != 0 { bytes.append(0x20) }
        return bytes
    }

    /// Parses and checks a header; returns the metadata and the entries sorted by offset.
    /// `dataLength` is the size of the data section these entries tile exactly.
    public static func parseHeader(_ bytes: [UInt8]) throws -> (metadata: [String: String], entries: [TensorEntry], dataLength: Int) {
        let json: JSONValue
        do { json = try JSON.parse(bytes) } catch let e as DDPMError { throw DDPMError("header is not valid JSON (\(e.message))") }
        guard case .object(let pairs) = json else { throw DDPMError("header is not a JSON object") }
        var metadata: [String: String] = [:]
        var entries: [TensorEntry] = []
        var seen = Set<String>()
        for (name, value) in pairs {
            guard seen.insert(name).inserted else { throw DDPMError("duplicate key '\(name)' in header") }
            if name == "__metadata__" {
                guard case .object(let m) = value else { throw DDPMError("__metadata__ is not an object") }
                for (k, v) in m {
                    guard case .string(let s) = v else { throw DDPMError("__metadata__ value for '\(k)' is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard case .object = value else { throw DDPMError("tensor '\(name)': entry is not an object") }
            guard case .string(let ds)? = value["dtype"] else { throw DDPMError("tensor '\(name)': missing dtype") }
            guard let dtype = DType(rawValue: ds) else {
                throw DDPMError("tensor '\(name)': unsupported dtype \(ds) (supported: \(DType.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            guard case .array(let dims)? = value["shape"] else { throw DDPMError("tensor '\(name)': missing shape") }
            var shape: [Int] = []
            var count = 1
            for d in dims {
                guard case .number(_, true, let n?) = d, n >= 0, n < (1 << 40) else { throw DDPMError("tensor '\(name)': shape has an invalid dimension") }
                shape.append(Int(n))
                let (c, overflow) = count.multipliedReportingOverflow(by: Int(n))
                guard !overflow, c < (1 << 40) else { throw DDPMError("tensor '\(name)': shape too large") }
                count = c
            }
            guard case .array(let offs)? = value["data_offsets"], offs.count == 2,
                  case .number(_, true, let b?) = offs[0], case .number(_, true, let e?) = offs[1],
                  b >= 0, e >= b, e < (1 << 46) else { throw DDPMError("tensor '\(name)': invalid data_offsets") }
            guard Int(e - b) == count * dtype.byteSize else {
                throw DDPMError("tensor '\(name)': shape \(shape) of \(dtype.rawValue) needs \(count * dtype.byteSize) bytes but data_offsets span \(e - b)")
            }
            entries.append(TensorEntry(name: name, dtype: dtype, shape: shape, begin: Int(b), end: Int(e)))
        }
        entries.sort { $0.begin < $1.begin || ($0.begin == $1.begin && $0.end < $1.end) }
        var cursor = 0
        for e in entries {
            guard e.begin == cursor else {
                throw DDPMError(e.begin < cursor ? "tensor '\(e.name)' overlaps the previous tensor" : "gap in the data before tensor '\(e.name)'")
            }
            cursor = e.end
        }
        return (metadata, entries, cursor)
    }
}
