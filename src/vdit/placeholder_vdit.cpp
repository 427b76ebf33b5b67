// placeholder: replaced as the component is written
