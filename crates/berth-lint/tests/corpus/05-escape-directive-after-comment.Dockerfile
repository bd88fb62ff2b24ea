# Build the gallery UI
# escape=`
FROM localhost:5000/gallery/node:20 AS build
RUN npm ci && `
    npm run build
