// JSON helpers for diffusers' config files (config.json, scheduler_config.json,
// model_index.json): typed reads that name the key and value they reject, and a
// writer with sorted keys and 2-space indentation (as diffusers' to_json_string).
import Foundation

/// A JSON object read key by key: each read removes the key, `finish` rejects the rest.
struct DiffusersConfigReader {
    let file: String
    var values: [String: JSONValue]

    init(file: String, json: JSONValue) throws {
        guard case .object(let pairs) = json else { throw DDPMError("\(file): not a JSON object") }
        self.file = file
        values = Dictionary(pairs, uniquingKeysWith: { $1 })
    }

    func describe(_ v: JSONValue) -> String { DiffusersJSON.text(v, indent: nil) }

    func error(_ key: String, _ v: JSONValue, _ expected: String) -> DDPMError {
        DDPMError("\(file): unsupported \(key) = \(describe(v)) (supported: \(expected))")
    }

    /// The value of `key` (nil: absent); the key is consumed.
    mutating func take(_ key: String) -> JSONValue? { values.removeValue(forKey: key) }

    mutating func int(_ key: String, _ def: Int?, range: ClosedRange<Int>) throws -> Int {
        guard let v = take(key), v != .null else {
            if let def { return def }
            throw DDPMError("\(file): missing \(key)")
        }
        guard case .number(_, true, let i?) = v, i >= Int64(range.lowerBound), i <= Int64(range.upperBound) else {
            throw error(key, v, "an integer in \(range.lowerBound) ... \(range.upperBound)")
        }
        return Int(i)
    }

    mutating func double(_ key: String, _ def: Double) throws -> Double {
        guard let v = take(key), v != .null else { return def }
        guard case .number(let d, _, _) = v, d.isFinite else { throw error(key, v, "a finite number") }
        return d
    }

    mutating func bool(_ key: String, _ def: Bool) throws -> Bool {
        guard let v = take(key), v != .null else { return def }
        guard case .bool(let b) = v else { throw error(key, v, "true or false") }
        return b
    }

    /// A string that must be one of `allowed` (nil in `allowed`: JSON null or absent).
    mutating func choice(_ key: String, _ allowed: [String?], def: String?) throws -> String? {
        let v = take(key) ?? (def.map { .string($0) } ?? .null)
        let s: String?
        switch v {
        case .null: s = nil
        case .string(let x): s = x
        default: throw error(key, v, allowed.map { $0 ?? "null" }.joined(separator: ", "))
        }
        guard allowed.contains(s) else { throw error(key, v, allowed.map { $0 ?? "null" }.joined(separator: ", ")) }
        return s
    }

    mutating func ints(_ key: String, maxCount: Int, range: ClosedRange<Int>) throws -> [Int] {
        guard let v = take(key), case .array(let a) = v, !a.isEmpty, a.count <= maxCount else {
            throw error(key, values[key] ?? .null, "a list of 1 ... \(maxCount) integers")
        }
        return try a.map {
            guard case .number(_, true, let i?) = $0, i >= Int64(range.lowerBound), i <= Int64(range.upperBound) else {
                throw error(key, v, "integers in \(range.lowerBound) ... \(range.upperBound)")
            }
            return Int(i)
        }
    }

    mutating func strings(_ key: String, maxCount: Int) throws -> [String] {
        guard let v = take(key), case .array(let a) = v, !a.isEmpty, a.count <= maxCount else {
            throw DDPMError("\(file): \(key) must be a list of 1 ... \(maxCount) block types")
        }
        return try a.map {
            guard case .string(let s) = $0 else { throw error(key, v, "a list of strings") }
            return s
        }
    }

    /// Rejects any key not read (names the first, sorted).
    func finish() throws {
        if let k = values.keys.sorted().first {
            throw DDPMError("\(file): unsupported key \(k) = \(describe(values[k]!))")
        }
    }
}

enum DiffusersJSON {
    /// Reads and parses a JSON file (bounded: config files are small).
    static func read(_ path: String) throws -> JSONValue {
        var st = stat()
        guard stat(path, &st) == 0 else { throw DDPMError("\(path): no such file") }
        guard st.st_size <= 1 << 24 else { throw DDPMError("\(path): \(st.st_size) bytes, too large for a config file (at most 16 MB)") }
        do { return try JSON.parse(try FileBytes.read(path)) }
        catch let e as DDPMError { throw DDPMError("\(path): not valid JSON (\(e.message))") }
    }

    static func int(_ i: Int) -> JSONValue { .number(Double(i), isInteger: true, integer: Int64(i)) }
    /// A float, written in its shortest round-tripping form with a fraction or exponent (as Python's json).
    static func float(_ d: Double) -> JSONValue { .number(d, isInteger: false, integer: nil) }

    static func text(_ v: JSONValue, indent: Int?, level: Int = 0) -> String {
        let pad = indent.map { String(repeating: " ", count: $0 * (level + 1)) } ?? ""
        let end = indent.map { String(repeating: " ", count: $0 * level) } ?? ""
        let nl = indent == nil ? "" : "\n", sep = indent == nil ? ", " : ",\n"
        switch v {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .string(let s): return JSON.quote(s)
        case .number(let d, let isInt, let i):
            if isInt, let i { return String(i) }
            return "\(d)"
        case .array(let a):
            if a.isEmpty { return "[]" }
            return "[" + nl + a.map { pad + text($0, indent: indent, level: level + 1) }.joined(separator: sep) + nl + end + "]"
        case .object(let pairs):
            if pairs.isEmpty { return "{}" }
            let sorted = pairs.sorted { $0.0 < $1.0 }
            return "{" + nl + sorted.map { pad + JSON.quote($0.0) + ": " + text($0.1, indent: indent, level: level + 1) }
                .joined(separator: sep) + nl + end + "}"
        }
    }

    /// Sorted keys, 2-space indent, a final newline (diffusers' to_json_string).
    static func file(_ pairs: [(String, JSONValue)]) -> [UInt8] {
        Array((text(.object(pairs), indent: 2) + "\n").utf8)
    }
}
