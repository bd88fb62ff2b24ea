FROM \
  # the builder image comes from the gallery
  localhost:5000/gallery/golang:1.22 \

  AS build
RUN go build \
    # trim paths for reproducible builds
    -trimpath \

    -o /out/app ./cmd/app

FROM \
    # not golden
    golang:1.22
COPY --from=build /out/app /app
