// What a document is, for each kind of corpus file, and the reader that streams a file's
// documents line by line (bounded memory: one line at a time, never a whole document).
//
//   text, DocSplit::paragraph (default): documents are separated by blank lines (empty or only
//        spaces, tabs and "\r"), the usual layout of books and speeches;
//   text, DocSplit::file: the whole file is one document (blank lines dropped);
//   text, DocSplit::line: every non-blank line is a document of one line (verses, glosses);
//   jsonl: every non-blank line is a JSON object {"text": string, ...} (other keys ignored),
//        one record one document; its text is split at "\n" into lines, blank lines dropped.
//
// Line text is kept as it is (leading spaces included); only the line break ("\n" or "\r\n")
// goes. A document without a non-blank line is no document. Bytes must be well-formed UTF-8:
// ill-formed bytes are rejected, not replaced, so a Latin-1 file is found at once instead of
// training on U+FFFD ("[corpus] f.txt: line 3 (byte offset 1041): invalid UTF-8 byte 0xe9";
// iconv -f latin1 -t utf8 converts it).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "metalm/io/fields.h"

namespace metalm::data {

enum class SourceFormat { text, jsonl };
enum class DocSplit { paragraph, file, line };
const io::EnumNames<SourceFormat>& source_format_names();  // "text", "jsonl"
const io::EnumNames<DocSplit>& doc_split_names();          // "paragraph", "file", "line"
// The format a file name implies: jsonl for names ending in ".jsonl", text otherwise.
SourceFormat format_of_path(const std::string& path);

struct DocumentOptions {
  SourceFormat format = SourceFormat::text;
  DocSplit split = DocSplit::paragraph;  // text only
  uint64_t max_line_bytes = 16 << 20;    // a longer file line (or JSONL record) is a FormatError
};

// Receives a file's documents: line() for each line of a document, end_document() after its
// last line. Lines are views valid during the call only.
struct DocumentSink {
  std::function<void(std::string_view)> line;
  std::function<void()> end_document;
};

// Streams the documents of one file into sink; progress(bytes) is called now and then with the
// bytes of the file consumed so far. FormatError names the file, the line and the byte offset;
// IoError if it cannot be read. Returns the number of documents.
uint64_t read_documents(const std::string& path, const DocumentOptions& options,
                        const DocumentSink& sink,
                        const std::function<void(uint64_t)>& progress = {});

}  // namespace metalm::data
