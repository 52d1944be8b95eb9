"""What the service serves to browsers: the web app and Swagger UI, from the package."""
