#include "daemon/backup/stream.hpp"

#include <malloc.h>

#include <algorithm>
#include <thread>

namespace drd::backup {

namespace fs = std::filesystem;

Result<std::unique_ptr<BackupWriter>> BackupWriter::create(const fs::path& final_path, const PipelineOptions& opts) {
  std::unique_ptr<BackupWriter> w(new BackupWriter());
  w->final_ = final_path;
  w->partial_ = final_path;
  w->partial_ += ".partial";
  std::error_code ec;
  if (fs::exists(final_path, ec))
    return make_error(Errc::conflict, "backup file " + final_path.string() + " already exists");
  auto f = opts.open_output ? opts.open_output(w->partial_) : open_output_file(w->partial_);
  if (!f) return f.error();
  w->file_ = std::move(f.value());
  w->container_ = std::make_unique<ContainerWriter>(*w->file_, opts.key, opts.chunk_size);
  w->cctx_ = ZSTD_createCCtx();
  // threads 0 = one per core, at most 4: zstd -3 on 4 cores already outruns the disk, and
  // every worker adds buffers to the daemon's RSS (the target is <= 64 MB).
  int threads = opts.threads > 0 ? opts.threads
                                 : static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 4u));
  ZSTD_CCtx_setParameter(w->cctx_, ZSTD_c_compressionLevel, opts.level);
  ZSTD_CCtx_setParameter(w->cctx_, ZSTD_c_checksumFlag, 1);
  // nbWorkers=1 already moves compression to one background thread; 1 means "no workers".
  if (threads > 1) {
    size_t rc = ZSTD_CCtx_setParameter(w->cctx_, ZSTD_c_nbWorkers, threads);
    (void)rc;  // a zstd built without threads ignores this; single-threaded is still correct
    // zstd's default job is 4 windows (8 MiB at level 3); zstd keeps about two jobs' input and
    // output per worker plus two spare, so the job size sets most of the backup's memory.
    // Measured on 2 cores, 1 GiB: 4 MiB jobs 5.5 s / 52 MB peak, 2 MiB jobs 6.7 s / 40 MB (the
    // hand-offs cost). Above two workers 2 MiB jobs keep four workers near the same peak.
    ZSTD_CCtx_setParameter(w->cctx_, ZSTD_c_jobSize, threads <= 2 ? 4 << 20 : 2 << 20);
  }
  w->zout_.resize(ZSTD_CStreamOutSize());
  return w;
}

BackupWriter::~BackupWriter() {
  if (!committed_) abort();
  ZSTD_freeCCtx(cctx_);
  // zstd's workers allocated their job buffers in their own malloc arenas, which glibc keeps
  // mapped after the threads end; give them back so a long-running drd returns to its idle size.
  ::malloc_trim(0);
}

void BackupWriter::abort() {
  failed_ = true;
  if (file_) (void)file_->close();
  std::error_code ec;
  fs::remove(partial_, ec);
}

Status BackupWriter::drain(ZSTD_EndDirective mode, ZSTD_inBuffer& in) {
  for (;;) {
    ZSTD_outBuffer out{zout_.data(), zout_.size(), 0};
    size_t rem = ZSTD_compressStream2(cctx_, &out, &in, mode);
    if (ZSTD_isError(rem)) return make_error(Errc::internal, std::string("zstd compression failed: ") + ZSTD_getErrorName(rem));
    if (out.pos) {
      auto s = container_->write(zout_.data(), out.pos);
      if (!s) return s;
    }
    bool done = mode == ZSTD_e_continue ? in.pos == in.size : rem == 0;
    if (done) return ok_status();
  }
}

Status BackupWriter::write(const void* p, std::size_t n) {
  if (failed_ || committed_) return make_error(Errc::internal, "write to a finished or failed backup writer");
  plain_hash_.update(p, n);
  source_bytes_ += n;
  ZSTD_inBuffer in{p, n, 0};
  auto s = drain(ZSTD_e_continue, in);
  if (!s) abort();
  return s;
}

Result<WriteStats> BackupWriter::commit() {
  if (failed_ || committed_) return make_error(Errc::internal, "commit of a finished or failed backup writer");
  ZSTD_inBuffer in{nullptr, 0, 0};
  auto fail = [&](Error e) -> Result<WriteStats> {
    abort();
    return e;
  };
  if (auto s = drain(ZSTD_e_end, in); !s) return fail(s.error());
  if (auto s = container_->finish(); !s) return fail(s.error());
  if (auto s = file_->sync(); !s) return fail(s.error());
  if (auto s = file_->close(); !s) return fail(s.error());
  std::error_code ec;
  fs::rename(partial_, final_, ec);
  if (ec) return fail(make_error(Errc::io, "cannot rename " + partial_.string() + " to " + final_.string() + ": " + ec.message()));
  committed_ = true;
  (void)fsync_path(final_.parent_path().empty() ? fs::path(".") : final_.parent_path());
  WriteStats st;
  st.source_bytes = source_bytes_;
  st.size_bytes = container_->file_bytes();
  st.chunks = container_->chunks();
  st.plaintext_sha256 = plain_hash_.hex_digest();
  st.file_sha256 = container_->file_sha256();
  return st;
}

Result<std::unique_ptr<BackupReader>> BackupReader::open(const fs::path& p, const MasterKey* key) {
  auto c = ContainerReader::open(p, key);
  if (!c) return c.error();
  std::unique_ptr<BackupReader> r(new BackupReader());
  r->path_ = p;
  r->container_ = std::move(c.value());
  r->dctx_ = ZSTD_createDCtx();
  return r;
}

BackupReader::~BackupReader() { ZSTD_freeDCtx(dctx_); }

Result<ReadStats> BackupReader::read_all(const ByteSink& sink) {
  ReadStats st;
  Sha256 plain;
  std::vector<std::uint8_t> chunk, out(ZSTD_DStreamOutSize());
  bool done = false;
  size_t last = 1;  // zstd's "more input expected" hint; 0 once the frame is complete
  while (!done) {
    auto s = container_->next(chunk, &done);
    if (!s) return s.error();
    ZSTD_inBuffer in{chunk.data(), chunk.size(), 0};
    while (in.pos < in.size) {
      ZSTD_outBuffer o{out.data(), out.size(), 0};
      last = ZSTD_decompressStream(dctx_, &o, &in);
      if (ZSTD_isError(last))
        return make_error(Errc::corrupt, "backup " + path_.string() + ": decompression failed in chunk " +
                                             std::to_string(container_->chunks() - 1) + ": " + ZSTD_getErrorName(last));
      if (o.pos) {
        plain.update(out.data(), o.pos);
        st.plaintext_bytes += o.pos;
        if (auto w = sink(out.data(), o.pos); !w) return w.error();
      }
    }
    // Flush what zstd still holds once the input is consumed.
    for (;;) {
      ZSTD_inBuffer none{nullptr, 0, 0};
      ZSTD_outBuffer o{out.data(), out.size(), 0};
      size_t r = ZSTD_decompressStream(dctx_, &o, &none);
      if (ZSTD_isError(r))
        return make_error(Errc::corrupt, "backup " + path_.string() + ": decompression failed: " + ZSTD_getErrorName(r));
      if (o.pos == 0) break;  // nothing held back; keep `last` from the call that consumed input
      last = r;
      plain.update(out.data(), o.pos);
      st.plaintext_bytes += o.pos;
      if (auto w = sink(out.data(), o.pos); !w) return w.error();
    }
  }
  if (last != 0)
    return make_error(Errc::corrupt, "backup " + path_.string() + ": compressed stream ends early (incomplete zstd frame)");
  st.chunks = container_->chunks();
  st.file_bytes = container_->file_bytes();
  st.file_sha256 = container_->file_sha256();
  st.plaintext_sha256 = plain.hex_digest();
  st.encrypted = container_->encrypted();
  st.key_id = container_->key_id();
  return st;
}

Result<ReadStats> read_backup(const fs::path& p, const MasterKey* key, const ByteSink& sink) {
  auto r = BackupReader::open(p, key);
  if (!r) return r.error();
  return r.value()->read_all(sink);
}

}  // namespace drd::backup
