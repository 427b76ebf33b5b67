#include "io/png_image.hpp"

#include <png.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>

#include "io/atomic_file.hpp"
#include "moddit/error.hpp"

namespace moddit {

RgbImage::RgbImage(int w, int h, Rgb fill) : width(w), height(h) {
  MODDIT_CHECK(w > 0 && h > 0, "image size ", w, "x", h, " is empty");
  MODDIT_CHECK(static_cast<int64_t>(w) * h <= (int64_t(1) << 28), "image size ", w, "x", h,
               " is too large");
  pixels.resize(static_cast<size_t>(w) * h * 3);
  for (size_t i = 0; i < pixels.size(); i += 3) {
    pixels[i] = fill.r;
    pixels[i + 1] = fill.g;
    pixels[i + 2] = fill.b;
  }
}

void RgbImage::fill_rect(int x0, int y0, int w, int h, Rgb c) {
  for (int y = y0; y < y0 + h; ++y)
    for (int x = x0; x < x0 + w; ++x) set_clipped(x, y, c);
}

namespace {

struct PngSink {
  std::vector<uint8_t>* out;
  char error[256];
};

void on_write(png_structp png, png_bytep data, png_size_t size) {
  auto* sink = static_cast<PngSink*>(png_get_io_ptr(png));
  sink->out->insert(sink->out->end(), data, data + size);
}
void on_flush(png_structp) {}

// libpng reports errors by longjmp; we record the message and jump back to the
// setjmp in encode_raw, which holds no objects with destructors.
void on_error(png_structp png, png_const_charp msg) {
  auto* sink = static_cast<PngSink*>(png_get_error_ptr(png));
  std::snprintf(sink->error, sizeof(sink->error), "%s", msg ? msg : "unknown libpng error");
  png_longjmp(png, 1);
}
void on_warning(png_structp, png_const_charp) {}

bool encode_raw(const RgbImage* image, png_bytep* rows, PngSink* sink) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, sink, on_error, on_warning);
  if (!png) {
    std::snprintf(sink->error, sizeof(sink->error), "png_create_write_struct failed");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_write_struct(&png, nullptr);
    std::snprintf(sink->error, sizeof(sink->error), "png_create_info_struct failed");
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_set_write_fn(png, sink, on_write, on_flush);
  png_set_IHDR(png, info, static_cast<png_uint_32>(image->width),
               static_cast<png_uint_32>(image->height), 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_set_rows(png, info, rows);
  png_write_png(png, info, PNG_TRANSFORM_IDENTITY, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

}  // namespace

std::vector<uint8_t> encode_png(const RgbImage& image) {
  MODDIT_CHECK(image.width > 0 && image.height > 0 &&
                   image.pixels.size() == static_cast<size_t>(image.width) * image.height * 3,
               "encode_png: image ", image.width, "x", image.height, " has ",
               image.pixels.size(), " bytes of pixels");
  std::vector<uint8_t> out;
  std::vector<png_bytep> rows(static_cast<size_t>(image.height));
  for (int y = 0; y < image.height; ++y)
    rows[static_cast<size_t>(y)] =
        const_cast<png_bytep>(&image.pixels[static_cast<size_t>(y) * image.width * 3]);
  PngSink sink{&out, {0}};
  if (!encode_raw(&image, rows.data(), &sink))
    throw Error(std::string("PNG encoding failed: ") + sink.error);
  return out;
}

void write_png(const std::string& path, const RgbImage& image) {
  std::vector<uint8_t> bytes;
  try {
    bytes = encode_png(image);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  write_file_atomic(path, bytes.data(), bytes.size());
}

}  // namespace moddit
