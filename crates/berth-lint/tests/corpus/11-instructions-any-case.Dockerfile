from localhost:5000/gallery/golang:1.22 as build
workdir /src
Copy . .
Run go build -o /out/app .

From localhost:5000/gallery/base:2.1 As final
copy --from=build /out/app /usr/local/bin/app
entrypoint ["app"]
