// The corpora of scripts/fetch_data.sh, as `metalm pretrain --data` reads them: one source per
// file present in data_dir (JSONL by extension, WordNet one document a line, the rest split at
// blank lines). Shared by metalm_bench_corpus and metalm_bench_tokenizer --corpus.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>

#include "metalm/data/corpus.h"

namespace metalm::bench {

// The sources found, and their total bytes in *bytes.
inline data::CorpusConfig corpus_files(const std::string& data_dir, uint64_t* bytes) {
  namespace fs = std::filesystem;
  data::CorpusConfig c;
  *bytes = 0;
  for (const char* name : {"kjv.txt", "moby-dick.txt", "wordnet.txt", "sotu.jsonl", "austen.jsonl",
                           "fortunes.jsonl", "gcide.jsonl"}) {
    const fs::path p = fs::path(data_dir) / name;
    if (!fs::exists(p)) continue;
    data::SourceConfig s;
    s.name = p.stem().string();
    s.paths = {p.string()};
    s.documents.format =
        p.extension() == ".jsonl" ? data::SourceFormat::jsonl : data::SourceFormat::text;
    s.documents.split = s.name == "wordnet" ? data::DocSplit::line : data::DocSplit::paragraph;
    c.sources.push_back(s);
    *bytes += fs::file_size(p);
  }
  return c;
}

}  // namespace metalm::bench
